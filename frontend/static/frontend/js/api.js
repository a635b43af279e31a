/* Every call to the REST API goes through here, so pages and scripts meet the same rules,
   and every failure reaches the page in the API's one error shape:
   {code, message, field, errors: [{code, message, field}, ...]}. */

export class ApiError extends Error {
  constructor(status, body) {
    const errors = (body && body.errors) || [{ code: "error", message: (body && body.message) || `The server answered ${status}.`, field: null }];
    super(errors[0].message);
    this.status = status;
    this.errors = errors;
  }
}

/* A problem the page finds before asking the server, shown the way the server's are. */
export function formError(message, field = null) {
  return new ApiError(400, { errors: [{ code: "invalid", message, field }] });
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

function unreachable() {
  return new ApiError(0, { message: "The server could not be reached: check the connection and try again." });
}

/* body: an object (sent as JSON) or a FormData (sent as multipart, for files). */
export async function api(method, url, body) {
  const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") options.headers["X-CSRFToken"] = csrfToken();
  if (body instanceof FormData) {
    options.body = body;
  } else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try { response = await fetch(url, options); } catch { throw unreachable(); }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/* POSTs a FormData and reports how much of it has left: fetch() cannot report an upload's progress,
   XMLHttpRequest can. onProgress(sentBytes, totalBytes); onSent() once the server has it all. */
export function upload(url, data, { onProgress, onSent }) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", url);
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.setRequestHeader("Accept", "application/json");
    request.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded, event.total); };
    request.upload.onload = () => onSent();
    request.onload = () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch { body = null; }
      if (request.status >= 200 && request.status < 300) resolve(body); else reject(new ApiError(request.status, body));
    };
    request.onerror = () => reject(unreachable());
    request.send(data);
  });
}
