/* Starts the vendored Swagger UI on the portal's own OpenAPI document (nothing from the internet). */
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    // No deep links: Swagger UI puts each operation's link inside its toggle button, and a link
    // inside a button is an interactive control nested in another (axe: nested-interactive).
    deepLinking: false,
    validatorUrl: null,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
