/**
 * The demo page on `GET /`: pick or drop an image, see its preview, the top-5 as labelled bars,
 * the timings, batch size and worker, or the API's error message. No framework and no files read
 * at run time (the page is strings in this module), so the same handler serves Node and Workers.
 *
 * Content negotiation: `GET /` answers the page when the `Accept` header prefers `text/html`
 * (browsers do), and the wrapped JSON handler otherwise: no `Accept`, curl's `*\/*`,
 * `application/json`, or `application/json` ranked above `text/html`. Both carry `Vary: Accept`.
 *
 * The page is sent with a strict Content-Security-Policy: the one inline script and the one
 * inline style are allowed by their SHA-256 hashes (the page is static, so hashes keep it
 * cacheable where a nonce could not be), images only from `blob:` (the preview), requests only to
 * this origin; plus `X-Content-Type-Options: nosniff`, `Referrer-Policy` and `X-Frame-Options`.
 *
 * Over 300 lines because most of it is the page itself (HTML, CSS and browser JavaScript as
 * strings, hashed together for the CSP); the TypeScript around them is short.
 *
 * @example
 * app.get('/', withDemoPage((c) => c.json({ service: 'image classification', endpoints: {} })));
 * // Accept: text/html            -> 200 text/html, the demo page
 * // Accept: *\/*, or no Accept   -> the JSON handler's answer
 */
import type { Context } from 'hono';
import { accepts } from 'hono/accepts';

const STYLE = `
:root { color-scheme: light; font: 16px/1.5 system-ui, sans-serif; color: #1d2330; background: #f4f6f9; }
body { margin: 0; }
main { max-width: 44rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
code { font-size: .9em; }
.drop { display: grid; gap: .5rem; justify-items: start; padding: 1.25rem; border: 2px dashed #8a94a6; border-radius: .75rem; background: #fff; }
.drop.over { border-color: #1f5fd1; background: #eaf1ff; }
.drop label { font-weight: 600; }
.hint { margin: 0; color: #4a5365; font-size: .9rem; }
.key { margin-top: .75rem; }
.key[open] { display: grid; gap: .35rem; justify-items: start; }
input[type=file]:focus-visible { outline: 3px solid #1f5fd1; outline-offset: 2px; }
figure { margin: 1rem 0 0; }
#preview { display: block; max-width: 100%; max-height: 18rem; border-radius: .5rem; }
figcaption { color: #4a5365; font-size: .9rem; }
#status { min-height: 1.5em; margin: 1rem 0 0; }
.error { margin: 1rem 0 0; padding: .75rem 1rem; border: 1px solid #c62828; border-left-width: 6px; border-radius: .5rem; background: #fdecec; color: #7a1010; }
.error p { margin: .25rem 0 0; }
ol { list-style: none; margin: 0; padding: 0; }
li { display: grid; grid-template-columns: 11rem 1fr 4.5rem; align-items: center; gap: .75rem; margin: .35rem 0; }
.label { overflow-wrap: anywhere; }
li:first-child .label { font-weight: 700; }
.bar { height: 1.1rem; border-radius: .3rem; background: #dde3ec; overflow: hidden; }
.fill { display: block; height: 100%; background: #1f5fd1; }
li:first-child .fill { background: #0d7a3f; }
.pct { text-align: right; font-variant-numeric: tabular-nums; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dt { color: #4a5365; }
dd { margin: 0; font-variant-numeric: tabular-nums; }
[hidden] { display: none !important; }
`;

// Plain browser JavaScript: no template literals or backslashes, so it reads the same here as it
// runs there, and its CSP hash is computed over exactly these characters.
const SCRIPT = `
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var input = $('file'), drop = $('drop'), preview = $('preview'), caption = $('file-name'), apiKey = $('api-key');
  var region = $('result'), statusLine = $('status'), errorBox = $('error');
  var list = $('predictions'), details = $('details');
  var controller = null, previewUrl = null;

  function set(id, text) { $(id).textContent = text; }
  function ms(value) { return typeof value === 'number' ? Math.round(value) + ' ms' : '-'; }

  function reset(message) {
    errorBox.hidden = true;
    list.replaceChildren();
    $('predictions-section').hidden = true;
    details.hidden = true;
    statusLine.textContent = message;
  }

  function showError(code, message) {
    set('error-code', code);
    set('error-message', message);
    errorBox.hidden = false;
    statusLine.textContent = 'The image could not be classified.';
  }

  function showResult(body, roundTripMs) {
    (body.predictions || []).forEach(function (p) {
      var item = document.createElement('li');
      item.setAttribute('data-testid', 'prediction');
      var label = document.createElement('span');
      label.className = 'label';
      label.setAttribute('data-testid', 'prediction-label');
      label.textContent = p.label;
      var bar = document.createElement('span');
      bar.className = 'bar';
      bar.setAttribute('aria-hidden', 'true');
      var fill = document.createElement('span');
      fill.className = 'fill';
      // CSSOM writes are allowed by the CSP; style attributes in markup would not be.
      fill.style.width = Math.max(0, Math.min(100, p.probability * 100)) + '%';
      bar.appendChild(fill);
      var pct = document.createElement('span');
      pct.className = 'pct';
      pct.setAttribute('data-testid', 'prediction-percent');
      pct.textContent = (p.probability * 100).toFixed(1) + '%';
      item.append(label, bar, pct);
      list.appendChild(item);
    });
    var t = body.timings || {};
    set('timing-preprocess', ms(t.preprocessMs));
    set('timing-queue', ms(t.queueMs));
    set('timing-inference', ms(t.inferenceMs));
    set('timing-total', ms(t.totalMs));
    set('timing-roundtrip', ms(roundTripMs));
    set('batch-size', String(body.batchSize == null ? '-' : body.batchSize));
    set('worker', body.worker || '-');
    set('model', body.model || '-');
    $('predictions-section').hidden = false;
    details.hidden = false;
    var top = body.predictions && body.predictions[0];
    statusLine.textContent = top ? 'Top prediction: ' + top.label + ', ' + (top.probability * 100).toFixed(1) + '%.' : 'No predictions.';
  }

  function classify(file) {
    if (controller) controller.abort();
    var mine = controller = new AbortController();
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    preview.hidden = false;
    caption.textContent = file.name + ' (' + (file.size < 1024 ? file.size + ' bytes' : Math.ceil(file.size / 1024) + ' KB') + ')';
    reset('Classifying ' + file.name + '...');
    region.setAttribute('aria-busy', 'true');

    var form = new FormData();
    form.append('image', file, file.name);
    var started = performance.now();
    var headers = { accept: 'application/json' };
    if (apiKey.value.trim()) headers.authorization = 'Bearer ' + apiKey.value.trim();
    fetch('predict', { method: 'POST', body: form, headers: headers, signal: mine.signal })
      .then(function (response) {
        return response.json().then(
          function (body) { return { response: response, body: body }; },
          function () { return { response: response, body: null }; }
        );
      })
      .then(function (r) {
        if (mine !== controller) return;
        var roundTripMs = performance.now() - started;
        if (r.response.ok && r.body && r.body.success) return showResult(r.body, roundTripMs);
        var error = r.body && r.body.error;
        if (error && error.message) showError(error.code || 'error', error.message + ' (HTTP ' + r.response.status + ')');
        else showError('http_' + r.response.status, 'The server answered HTTP ' + r.response.status + ' ' + r.response.statusText + ' without an error message.');
      })
      .catch(function (error) {
        if (mine !== controller || error.name === 'AbortError') return;
        showError('network_error', 'The request failed: ' + error.message);
      })
      .finally(function () {
        if (mine === controller) region.setAttribute('aria-busy', 'false');
      });
  }

  // A file that is not an image gets no preview; the server's answer says why it is refused.
  preview.addEventListener('error', function () { preview.hidden = true; });
  input.addEventListener('change', function () {
    if (input.files && input.files[0]) classify(input.files[0]);
    // Cleared, so picking the same file again (say, after entering an API key) sends it again.
    input.value = '';
  });
  ['dragenter', 'dragover'].forEach(function (type) {
    drop.addEventListener(type, function (event) {
      event.preventDefault();
      drop.classList.add('over');
    });
  });
  ['dragleave', 'drop'].forEach(function (type) {
    drop.addEventListener(type, function () { drop.classList.remove('over'); });
  });
  drop.addEventListener('drop', function (event) {
    event.preventDefault();
    var file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) classify(file);
  });
  // A file dropped beside the zone must not navigate away from the page.
  window.addEventListener('dragover', function (event) { event.preventDefault(); });
  window.addEventListener('drop', function (event) { event.preventDefault(); });
  $('js-only').hidden = false;
})();
`;

const BODY = `
<main>
  <h1>Image classification demo</h1>
  <p>Keras ResNet50 trained on ImageNet (1000 classes). The image is sent to
    <code>POST /predict</code> (multipart field <code>image</code>) and queued for a GPU worker.</p>
  <noscript><p>This page needs JavaScript. The API works without it:
    <code>curl -F image=@dog.jpg &lt;this address&gt;/predict</code></p></noscript>

  <div id="js-only" hidden>
    <div id="drop" class="drop" data-testid="dropzone">
      <label for="file">Choose an image</label>
      <input id="file" name="image" type="file" data-testid="file-input" aria-describedby="file-hint"
        accept="image/jpeg,image/png,image/webp,image/gif">
      <p id="file-hint" class="hint">JPEG, PNG, WebP or GIF. You can also drop an image on this box.</p>
    </div>

    <details class="key">
      <summary>API key (only if this edge requires one)</summary>
      <label for="api-key">Bearer key</label>
      <input id="api-key" type="password" autocomplete="off" spellcheck="false" data-testid="api-key" aria-describedby="api-key-hint">
      <p id="api-key-hint" class="hint">Sent as <code>Authorization: Bearer</code> with each image; kept only in this page.</p>
    </details>

    <figure>
      <img id="preview" data-testid="preview" alt="Preview of the chosen image" hidden>
      <figcaption id="file-name" data-testid="file-name"></figcaption>
    </figure>

    <section id="result" data-testid="result" aria-live="polite" aria-busy="false" aria-labelledby="result-heading">
      <h2 id="result-heading">Result</h2>
      <p id="status" data-testid="status">Choose an image to classify it.</p>
      <div id="error" class="error" data-testid="error" hidden>
        <strong>Error <code id="error-code" data-testid="error-code"></code></strong>
        <p id="error-message" data-testid="error-message"></p>
      </div>
      <div id="predictions-section" hidden>
        <h2 id="predictions-heading">Top predictions</h2>
        <ol id="predictions" data-testid="predictions" aria-labelledby="predictions-heading"></ol>
      </div>
      <div id="details" data-testid="details" hidden>
        <h2>Timings</h2>
        <dl>
          <dt>Preprocess (edge)</dt><dd id="timing-preprocess" data-testid="timing-preprocess"></dd>
          <dt>Queue wait</dt><dd id="timing-queue" data-testid="timing-queue"></dd>
          <dt>Inference (batch)</dt><dd id="timing-inference" data-testid="timing-inference"></dd>
          <dt>Total (server)</dt><dd id="timing-total" data-testid="timing-total"></dd>
          <dt>Round trip (browser)</dt><dd id="timing-roundtrip" data-testid="timing-roundtrip"></dd>
          <dt>Batch size</dt><dd id="batch-size" data-testid="batch-size"></dd>
          <dt>Worker</dt><dd id="worker" data-testid="worker"></dd>
          <dt>Model</dt><dd id="model" data-testid="model"></dd>
        </dl>
      </div>
    </section>
  </div>
</main>
`;

/** The whole page; `<script>` and `<style>` hold exactly SCRIPT and STYLE, as their hashes require. */
export const DEMO_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Image classification demo - ResNet50</title>
<style>${STYLE}</style>
</head>
<body>${BODY}<script>${SCRIPT}</script>
</body>
</html>
`;

async function sha256Base64(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  return btoa(String.fromCharCode(...digest));
}

let csp: Promise<string> | undefined;

/** Hashed on first use, inside a request (Workers limit async work at global scope); cached after. */
export function demoContentSecurityPolicy(): Promise<string> {
  csp ??= Promise.all([sha256Base64(SCRIPT), sha256Base64(STYLE)]).then(([script, style]) =>
    [
      "default-src 'none'",
      `script-src 'sha256-${script}'`,
      `style-src 'sha256-${style}'`,
      'img-src blob:',
      "connect-src 'self'",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join('; '),
  );
  return csp;
}

/** True when the client ranks text/html at least as high as JSON (`*\/*` alone does not count). */
export function prefersHtml(c: Context): boolean {
  return accepts(c, { header: 'Accept', supports: ['text/html', 'application/json'], default: 'application/json' }) === 'text/html';
}

/** The page with its security headers. */
export async function demoPage(c: Context): Promise<Response> {
  return c.html(DEMO_HTML, 200, {
    'Content-Security-Policy': await demoContentSecurityPolicy(),
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
    // The same URL also answers JSON: caches must revalidate and key on Accept.
    'Cache-Control': 'no-cache',
    Vary: 'Accept',
  });
}

/** `GET /` handler: the demo page for browsers, `json` for everyone else (see the module doc). */
export function withDemoPage<C extends Context>(json: (c: C) => Response | Promise<Response>) {
  return async (c: C): Promise<Response> => {
    if (prefersHtml(c)) return demoPage(c);
    c.header('Vary', 'Accept', { append: true });
    return json(c);
  };
}
