// Home-realm discovery on the sign-in page, as an enhancement: the form works without it.
// When the email's domain signs in through an organisation's identity provider, the
// password field steps aside and the main button says "Continue"; an empty password
// sends the person to their provider. "Use a password instead" brings the field back
// (for a break-glass admin).
(function () {
  "use strict";
  var form = document.getElementById("login-form");
  if (!form || !window.fetch) return;
  var email = form.querySelector("input[name=email]");
  var password = form.querySelector("input[name=password]");
  var field = document.getElementById("password-field");
  var notice = document.getElementById("sso-notice");
  var submit = form.querySelector("input[type=submit][name=submit]");
  var signInLabel = submit.value;
  var forcePassword = false;
  // With this script the page finds the provider by itself: the explicit button and
  // its hint are for browsers without JavaScript.
  var ssoButton = form.querySelector("input[type=submit][name=sso]");
  var hint = document.getElementById("sso-hint");
  if (ssoButton) ssoButton.hidden = true;
  if (hint) hint.hidden = true;
  var timer = null;
  var asked = "";

  function show(realm) {
    var sso = realm && realm.sso && !forcePassword;
    field.hidden = !!sso;
    submit.value = sso ? "Continue" : signInLabel;
    if (realm && realm.sso) {
      notice.hidden = false;
      notice.textContent = "";
      notice.appendChild(document.createTextNode(
        realm.label + " signs you in with its own identity provider. "));
      if (!forcePassword) {
        var link = document.createElement("a");
        link.href = "#";
        link.textContent = "Use a password instead";
        link.addEventListener("click", function (event) {
          event.preventDefault();
          forcePassword = true;
          show(realm);
          password.focus();
        });
        notice.appendChild(link);
      }
    } else {
      notice.hidden = true;
      notice.textContent = "";
    }
  }

  function ask() {
    var value = email.value.trim();
    if (value === asked) return;
    asked = value;
    if (value.indexOf("@") < 1) { show(null); return; }
    fetch(form.dataset.realmUrl + "?email=" + encodeURIComponent(value), {
      headers: { Accept: "application/json" }, credentials: "same-origin"
    }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (realm) { if (email.value.trim() === value) show(realm); })
      .catch(function () { show(null); });
  }

  email.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(ask, 250);
  });
  email.addEventListener("change", ask);
  form.addEventListener("submit", function () {
    if (field.hidden) password.value = "";
  });
  if (email.value) ask();
})();
