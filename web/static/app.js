/* skinscan upload page: sends the chosen photo straight to the classify function and shows its
 * answer. Data is only ever written with textContent, never as HTML. Nothing is stored: no
 * cookies, no local storage; the photo lives in memory until the page is closed.
 * Without JavaScript (or without fetch) the form posts to the server, which renders the same blocks.
 *
 * Language: ?lang= in the URL (the select writes it there, and nowhere else), else the first of
 * navigator.languages the page speaks, else English. The page's words in every language are in
 * the embedded texts; each element with fixed words carries data-i18n="key". The function is
 * asked for the same language (Accept-Language), so its advice comes in it too.
 */
(function () {
  "use strict";

  if (!window.fetch || !window.FormData || !window.AbortController || !("content" in document.createElement("template"))) {
    return; // the plain form still works where a server renders it
  }

  var config = window.SKINSCAN_CONFIG || {};
  var texts = JSON.parse(document.getElementById("skinscan-texts").textContent);
  var language = chooseLanguage();
  var words = texts.words[language];

  var form = document.getElementById("upload-form");
  var inputs = [document.getElementById("photo"), document.getElementById("camera")];
  var dropzone = document.getElementById("dropzone");
  var preview = document.getElementById("preview");
  var previewImage = document.getElementById("preview-image");
  var previewName = document.getElementById("preview-name");
  var analyseButton = document.getElementById("analyse");
  var region = document.getElementById("result");

  var chosen = null;      // the File to send
  var previewUrl = null;  // its object URL, revoked when replaced
  var busy = false;

  // The base language of a tag ("pt-BR" -> "pt") when the page speaks it.
  function spoken(tag) {
    var base = String(tag || "").toLowerCase().replace("_", "-").split("-")[0];
    return texts.languages.indexOf(base) >= 0 ? base : null;
  }

  function chooseLanguage() {
    var fromUrl = spoken(new URLSearchParams(window.location.search).get("lang"));
    if (fromUrl) return fromUrl;
    var preferred = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
    for (var i = 0; i < preferred.length; i++) {
      if (spoken(preferred[i])) return spoken(preferred[i]);
    }
    return "en";
  }

  // Every element with fixed words, in the page and inside its <template>s, in the chosen language.
  function applyLanguage(code) {
    language = code;
    words = texts.words[code];
    document.documentElement.lang = code;
    var roots = [document].concat(Array.prototype.map.call(document.querySelectorAll("template"),
      function (template) { return template.content; }));
    roots.forEach(function (root) {
      root.querySelectorAll("[data-i18n]").forEach(function (element) {
        var text = words.page[element.getAttribute("data-i18n")];
        if (text != null) element.textContent = text;
      });
      // data-i18n-lead: the words before the element's first child ("Photo: <span>…</span>").
      root.querySelectorAll("[data-i18n-lead]").forEach(function (element) {
        var text = words.page[element.getAttribute("data-i18n-lead")];
        if (text != null && element.firstChild && element.firstChild.nodeType === 3) {
          element.firstChild.textContent = text + " ";
        }
      });
      [["data-i18n-alt", "alt"], ["data-i18n-aria-label", "aria-label"], ["data-i18n-content", "content"]]
        .forEach(function (pair) {
          root.querySelectorAll("[" + pair[0] + "]").forEach(function (element) {
            var text = words.page[element.getAttribute(pair[0])];
            if (text != null) element.setAttribute(pair[1], text);
          });
        });
    });
    var select = document.getElementById("language");
    if (select) select.value = code;
    var hidden = document.getElementById("form-lang");
    if (hidden) hidden.value = code;
  }

  if (document.documentElement.lang !== language) applyLanguage(language);
  var analyseLabel = analyseButton.textContent;

  function clone(id) {
    return document.getElementById(id).content.firstElementChild.cloneNode(true);
  }

  function fill(root, slot, text) {
    var element = root.querySelector('[data-slot="' + slot + '"]');
    if (element) element.textContent = text == null ? "" : String(text);
  }

  function removePart(root, part) {
    var element = root.querySelector('[data-part="' + part + '"]');
    if (element) element.remove();
  }

  function show(element, focus) {
    region.replaceChildren(element);
    if (focus) {
      var heading = element.querySelector("[tabindex='-1']");
      if (heading) heading.focus({ preventScroll: true });
      element.scrollIntoView({ behavior: "smooth", block: "start" });
    }
  }

  // Mirrors skinscan.i18n.Translator.percent exactly: halves round up (0.125 -> "13%"), and the
  // language's own pattern from Babel ("13 %" in German); tests pin both.
  function percent(probability) {
    var value = Number(probability);
    if (!isFinite(value)) return "";
    if (value > 0 && value < 0.005) return "<" + words.percent.replace("{n}", "1");
    return words.percent.replace("{n}", String(Math.round(Math.min(Math.max(value, 0), 1) * 100)));
  }

  // The function's code, else the code for its status: the table is skinscan.contract's
  // code_for_status (texts.statusCodes), the same rule the page's server side uses.
  function errorKey(code, status) {
    var byStatus = texts.statusCodes[status] || (status >= 500 ? "unavailable" : "unexpected");
    var candidates = [code, byStatus];
    for (var i = 0; i < candidates.length; i++) {
      var key = texts.errorAliases[candidates[i]] || candidates[i];
      if (key && words.errors[key]) return key;
    }
    return "unexpected";
  }

  function showError(key, focus) {
    var box = clone("error-template");
    fill(box, "error-message", words.errors[key] || words.errors.unexpected);
    show(box, focus);
  }

  function showResult(result, filename) {
    var recommendation = result && result.recommendation;
    if (!result || (result.status !== "ok" && result.status !== "not_recognised") ||
        !recommendation || typeof recommendation !== "object") {
      showError("unexpected", true);
      return;
    }
    var level = String(recommendation.level || "");
    var view = clone("result-template");
    view.className = "result level-" + (words.levels[level] ? level : "unknown");
    fill(view, "heading", words.levels[level] || words.defaultHeading);
    fill(view, "message", recommendation.message);

    showChecklist(view, result, recommendation);

    var retake = result.status === "not_recognised" || level === "retake";
    if (!retake) removePart(view, "tips");

    var top = result.top_condition;
    if (top && typeof top === "object") {
      fill(view, "top-label", top.name || top.label);
      fill(view, "top-description", top.description);
    } else {
      removePart(view, "top");
    }

    var predictions = result.status === "ok" && Array.isArray(result.predictions) ? result.predictions.slice(0, 4) : [];
    if (predictions.length) {
      var row = view.querySelector('[data-part="prediction"]');
      var list = row.parentNode;
      row.remove();
      predictions.forEach(function (prediction) {
        var item = row.cloneNode(true);
        var probability = Math.min(Math.max(Number(prediction && prediction.probability) || 0, 0), 1);
        fill(item, "label", prediction && (prediction.name || prediction.label));
        fill(item, "percent", percent(probability));
        item.querySelector("meter").value = probability;
        list.appendChild(item);
      });
    } else {
      removePart(view, "predictions");
    }

    fill(view, "disclaimer", result.disclaimer);
    if (filename) fill(view, "filename", filename); else removePart(view, "filename");
    var model = result.model && typeof result.model === "object"
      ? [result.model.name, result.model.version].filter(Boolean).join(" ") : "";
    if (model) fill(view, "model", model); else removePart(view, "model");
    show(view, true);
  }

  // What the answers did: the same sentences as skinscan_client.checklist_effect (words.effects).
  function showChecklist(view, result, recommendation) {
    var summary = result.checklist;
    if (!summary || typeof summary !== "object") { removePart(view, "checklist"); return; }
    var score = String(Number(summary.score) || 0);
    var raised = recommendation.raised_by === "checklist" && words.raisedTo[recommendation.level];
    var effect = raised ? words.effects.raised.replace("{to}", words.raisedTo[recommendation.level])
      : words.effects[words.raisedTo[summary.level] ? "agree" : "stands"].replace("{score}", score);
    fill(view, "checklist-effect", effect);
    if (raised) {
      fill(view, "photo-alone", words.levels[recommendation.photo_level] || words.defaultHeading);
    } else {
      removePart(view, "photo-alone");
      view.querySelector('[data-part="checklist"]').classList.remove("is-raised");
    }
  }

  // The answered radio groups only: an unanswered question is not sent (the same as the plain form).
  function appendAnswers(body) {
    texts.answerFields.forEach(function (field) {
      var checked = form.querySelector('input[type="radio"][name="' + field + '"]:checked');
      if (checked) body.append(field, checked.value);
    });
  }

  function setBusy(value) {
    busy = value;
    form.classList.toggle("is-busy", value);
    region.setAttribute("aria-busy", value ? "true" : "false");
    analyseButton.disabled = value;
    analyseButton.textContent = value ? words.page.analysing_button : analyseLabel;
    inputs.forEach(function (input) { if (input) input.disabled = value; });
  }

  function choose(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    chosen = null;
    preview.hidden = true;
    region.replaceChildren();
    if (!file) return;
    if (file.size > texts.maxBytes) { showError("too_large", false); return; }
    if (file.size === 0) { showError("empty_image", false); return; }
    if (file.type && file.type.indexOf("image/") !== 0) { showError("not_an_image", false); return; }
    chosen = file;
    previewUrl = URL.createObjectURL(file);
    previewImage.hidden = false;
    previewImage.src = previewUrl;
    previewName.textContent = file.name || words.page.your_photo;
    preview.hidden = false;
  }

  previewImage.addEventListener("error", function () {
    // e.g. a format the browser cannot display; the function may still read it
    previewImage.hidden = true;
    previewName.textContent = (chosen && chosen.name ? chosen.name + ": " : "") + words.page.no_preview;
  });

  inputs.forEach(function (input) {
    if (!input) return;
    input.addEventListener("change", function () {
      inputs.forEach(function (other) { if (other && other !== input) other.value = ""; });
      choose(input.files && input.files[0]);
    });
  });

  // Drag and drop: anywhere on the drop zone; stop the browser from opening files dropped elsewhere.
  ["dragenter", "dragover"].forEach(function (type) {
    dropzone.addEventListener(type, function (event) {
      event.preventDefault();
      if (!busy) dropzone.classList.add("is-dragging");
    });
  });
  ["dragleave", "dragend", "drop"].forEach(function (type) {
    dropzone.addEventListener(type, function () { dropzone.classList.remove("is-dragging"); });
  });
  dropzone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (busy) return;
    var files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) {
      inputs.forEach(function (input) { if (input) input.value = ""; });
      choose(files[0]);
    }
  });
  ["dragover", "drop"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      if (!dropzone.contains(event.target)) event.preventDefault();
    });
  });

  // Phone photos run to several megabytes while the model looks at a small square. A large photo
  // is sent as a JPEG copy at most MAX_SIDE pixels on its long side: uploads stay quick and under
  // the 6 MB request limit of serverless endpoints. The browser applies the EXIF orientation when
  // drawing, and the copy carries no EXIF (no GPS) at all. If anything fails, the original goes.
  var MAX_SIDE = 1280;
  var SHRINK_FROM_BYTES = 1024 * 1024;

  async function smaller(file) {
    if (file.size < SHRINK_FROM_BYTES || !window.createImageBitmap || !HTMLCanvasElement.prototype.toBlob) return file;
    try {
      var bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
      var scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
      var canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(bitmap.width * scale));
      canvas.height = Math.max(1, Math.round(bitmap.height * scale));
      canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      if (bitmap.close) bitmap.close();
      var blob = await new Promise(function (resolve) { canvas.toBlob(resolve, "image/jpeg", 0.92); });
      return blob && blob.size < file.size ? blob : file;
    } catch (ignored) {
      return file;
    }
  }

  // Deployed, the page calls /api/classify on its own origin and CloudFront passes the request on
  // to the classify function, signed (origin access control). Lambda accepts no unsigned body, so a
  // same-origin POST carries x-amz-content-sha256, the hex SHA-256 of the exact bytes sent: the form
  // is serialised once (new Response(form) gives its bytes and multipart boundary), and those bytes
  // are both hashed and sent. Cross-origin (local development) nothing changes: the extra header
  // would need a CORS preflight that the local function does not allow.
  function sameOrigin(url) {
    try { return new URL(url, window.location.href).origin === window.location.origin; } catch (ignored) { return false; }
  }

  async function payload(form) {
    var headers = { "Accept": "application/json", "Accept-Language": language };
    if (!sameOrigin(config.functionUrl) || !window.crypto || !window.crypto.subtle || !window.Response) {
      return { body: form, headers: headers };
    }
    var serialised = new Response(form);
    var bytes = await serialised.arrayBuffer();
    var digest = new Uint8Array(await window.crypto.subtle.digest("SHA-256", bytes));
    headers["Content-Type"] = serialised.headers.get("Content-Type");
    headers["x-amz-content-sha256"] = Array.prototype.map.call(digest, function (byte) {
      return (byte < 16 ? "0" : "") + byte.toString(16);
    }).join("");
    return { body: bytes, headers: headers };
  }

  async function analyse(file) {
    if (!config.functionUrl) { showError("not_configured", true); return; }
    var body = new FormData();
    var upload = await smaller(file);
    body.append("image", upload, upload === file ? (file.name || "photo") : "photo.jpg");
    appendAnswers(body);
    var controller = new AbortController();
    var timeoutMs = Number(config.timeoutMs) || texts.timeoutMs || 30000;  // config may override
    var timer = setTimeout(function () { controller.abort(); }, timeoutMs);
    setBusy(true);
    var analysing = clone("analysing-template");
    show(analysing, false);
    analysing.scrollIntoView({ behavior: "smooth", block: "nearest" });
    try {
      var request = await payload(body);
      var response = await fetch(config.functionUrl, {
        method: "POST", body: request.body, signal: controller.signal,
        credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer", mode: "cors",
        headers: request.headers
      });
      var answer = null;
      try { answer = await response.json(); } catch (ignored) { answer = null; }
      if (!response.ok) {
        var code = answer && answer.error && answer.error.code;
        showError(errorKey(code, response.status), true);
      } else {
        showResult(answer, file.name);
      }
    } catch (error) {
      showError(error && error.name === "AbortError" ? "timeout" : "network", true);
    } finally {
      clearTimeout(timer);
      setBusy(false);
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) return;
    if (!chosen) {
      showError("missing_image", true);
      return;
    }
    analyse(chosen);
  });

  // The language select: a change applies at once and is remembered only in the URL (?lang=).
  var languageForm = document.getElementById("language-form");
  var languageSelect = document.getElementById("language");
  if (languageForm && languageSelect) {
    languageForm.classList.add("has-js");
    languageForm.addEventListener("submit", function (event) { event.preventDefault(); });
    languageSelect.addEventListener("change", function () {
      var code = spoken(languageSelect.value) || "en";
      if (busy) { languageSelect.value = language; return; }
      applyLanguage(code);
      analyseLabel = analyseButton.textContent;
      region.replaceChildren();  // an answer in the old language would mix two languages
      var url = new URL(window.location.href);
      url.searchParams.set("lang", code);
      window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    });
  }

  form.classList.add("has-js");
})();
