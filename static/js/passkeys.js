// Passkeys (WebAuthn): registering one on the security page, and the passkey option of the
// second sign-in step. Each form marked data-passkey="register" or "authenticate" is hidden
// in the HTML (with a note that passkeys need JavaScript); this script shows it where the
// browser has WebAuthn. On submit it asks the portal for the options (POST, JSON, CSRF
// token in X-CSRFToken), lets the browser talk to the authenticator, writes the answer
// (PublicKeyCredential as JSON, binary fields base64url) into the hidden credential field
// and submits the form as usual; the portal verifies it and answers with a page.
(function () {
  "use strict";

  function toBytes(value) {
    var base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) base64 += "=";
    var text = atob(base64);
    var bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes.buffer;
  }

  function fromBytes(buffer) {
    var bytes = new Uint8Array(buffer);
    var text = "";
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      var copy = { type: item.type, id: toBytes(item.id) };
      if (item.transports) copy.transports = item.transports;
      return copy;
    });
  }

  function creationOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.user = Object.assign({}, json.user, { id: toBytes(json.user.id) });
    options.excludeCredentials = descriptors(json.excludeCredentials);
    return options;
  }

  function requestOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.allowCredentials = descriptors(json.allowCredentials);
    return options;
  }

  function credentialJSON(credential) {
    var response = credential.response;
    var answer = {
      id: credential.id,
      rawId: fromBytes(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults
        ? credential.getClientExtensionResults() : {},
      response: { clientDataJSON: fromBytes(response.clientDataJSON) }
    };
    if (response.attestationObject) {
      answer.response.attestationObject = fromBytes(response.attestationObject);
      answer.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      answer.response.authenticatorData = fromBytes(response.authenticatorData);
      answer.response.signature = fromBytes(response.signature);
      answer.response.userHandle = response.userHandle ? fromBytes(response.userHandle) : null;
    }
    return answer;
  }

  function problemText(response) {
    return response.json().then(function (body) {
      return (body && (body.detail || body.title)) || "The portal refused. Try again.";
    }, function () { return "The portal refused. Try again."; });
  }

  function setUp(form) {
    var kind = form.dataset.passkey;
    var status = form.querySelector("[data-passkey-status]");
    var field = form.querySelector("[data-passkey-credential]");
    var button = form.querySelector("button[type=submit]");
    var token = form.querySelector("input[name$=csrf_token]");
    var busy = false;

    function say(text) { status.textContent = text; }

    form.addEventListener("submit", function (event) {
      if (field.value) return; // the answer is in: let the form go
      event.preventDefault();
      if (busy) return;
      busy = true;
      button.setAttribute("aria-busy", "true");
      say(kind === "register" ? "Follow your browser's steps to make a passkey…"
                              : "Follow your browser's steps to use your passkey…");
      fetch(form.dataset.optionsUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRFToken": token ? token.value : "" }
      }).then(function (response) {
        if (!response.ok) return problemText(response).then(function (text) { throw new Error(text); });
        return response.json();
      }).then(function (json) {
        return kind === "register"
          ? navigator.credentials.create({ publicKey: creationOptions(json) })
          : navigator.credentials.get({ publicKey: requestOptions(json) });
      }).then(function (credential) {
        if (!credential) throw new Error("No passkey was chosen. Try again.");
        field.value = JSON.stringify(credentialJSON(credential));
        say(kind === "register" ? "Saving your passkey…" : "Signing you in…");
        form.submit();
      }).catch(function (error) {
        busy = false;
        button.removeAttribute("aria-busy");
        if (error && error.name === "NotAllowedError") {
          say("The passkey request was cancelled or timed out. Try again.");
        } else if (error && error.name === "InvalidStateError") {
          say("This device already holds a passkey for your account.");
        } else {
          say((error && error.message) || "Passkeys did not work in this browser.");
        }
      });
    });
  }

  var forms = document.querySelectorAll("form[data-passkey]");
  if (!forms.length) return;
  var supported = window.PublicKeyCredential && navigator.credentials && window.fetch;
  document.querySelectorAll(".passkey-needs-js").forEach(function (note) {
    if (supported) {
      note.hidden = true;
    } else {
      note.textContent = "This browser cannot use passkeys.";
    }
  });
  if (!supported) return;
  forms.forEach(function (form) {
    if (form.dataset.passkeyReady) return; // the script may be included twice on a page
    form.dataset.passkeyReady = "1";
    form.hidden = false;
    setUp(form);
  });
})();
