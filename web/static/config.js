// Where the page sends photos. The deploy overwrites this file with the deployed function's URL;
// the local Flask app (`skinscan serve`, `python -m web`) generates it from SKINSCAN_FUNCTION_URL.
window.SKINSCAN_CONFIG = {functionUrl: "http://127.0.0.1:8080/"};
