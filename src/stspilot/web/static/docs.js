// Starts Swagger UI (served by the app from /docs/assets, no CDN) on the description named by
// #swagger-ui's data-spec. "Try it out" requests carry the page's CSRF token, as forms do.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  if (!root || typeof SwaggerUIBundle === "undefined") return;
  const meta = document.querySelector('meta[name="csrf-token"]');
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,  // the online validator badge would call swagger.io
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: (request) => {
      if (meta) request.headers["X-CSRF-Token"] = meta.content;
      return request;
    },
  });
});
