// Where the page sends photos. The deploy (infra/deploy_page.py) overwrites this file with the
// same-origin path "/api/classify" (CloudFront forwards it to the function, signed); the local Flask app (`skinscan serve`, `python -m web`) generates it from SKINSCAN_FUNCTION_URL.
window.SKINSCAN_CONFIG = {functionUrl: "http://127.0.0.1:8080/"};
