// The WebAuthn ceremony for latchkey's pages, the one place they need JavaScript. A button
// with data-passkey="register", "sign-in" or "second-factor" asks the server for the options,
// hands them to the browser's authenticator, and posts its answer back. Bytes travel as
// base64url, as webauthn-rs writes them.
(() => {
  const bytes = (text) => Uint8Array.from(
    atob(text.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(text.length / 4) * 4, '=')),
    (c) => c.charCodeAt(0));
  const text = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

  function creationOptions(options) {
    const key = options.publicKey;
    key.challenge = bytes(key.challenge);
    key.user.id = bytes(key.user.id);
    (key.excludeCredentials || []).forEach((c) => { c.id = bytes(c.id); });
    return { publicKey: key };
  }

  function requestOptions(options) {
    const key = options.publicKey;
    key.challenge = bytes(key.challenge);
    (key.allowCredentials || []).forEach((c) => { c.id = bytes(c.id); });
    return { publicKey: key };
  }

  function answer(credential) {
    const r = credential.response;
    const response = r.attestationObject
      ? { attestationObject: text(r.attestationObject), clientDataJSON: text(r.clientDataJSON) }
      : {
        authenticatorData: text(r.authenticatorData),
        clientDataJSON: text(r.clientDataJSON),
        signature: text(r.signature),
        userHandle: r.userHandle ? text(r.userHandle) : null,
      };
    return {
      id: credential.id,
      rawId: text(credential.rawId),
      type: credential.type,
      response,
      extensions: credential.getClientExtensionResults(),
    };
  }

  async function post(url, body) {
    const reply = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const json = await reply.json();
    if (!reply.ok) throw new Error(json.message || 'The server refused the passkey.');
    return json;
  }

  const routes = {
    register: '/account/passkeys',
    'sign-in': '/signin/passkey',
    'second-factor': '/signin/second-factor/passkey',
  };

  document.querySelectorAll('[data-passkey]').forEach((button) => {
    button.hidden = false;
    button.addEventListener('click', async (event) => {
      event.preventDefault();
      const kind = button.dataset.passkey;
      const form = button.closest('form');
      const status = document.getElementById('passkey-status');
      const fields = Object.fromEntries(new FormData(form));
      button.disabled = true;
      try {
        const started = await post(`${routes[kind]}/start`, { csrf: fields.csrf });
        const credential = kind === 'register'
          ? await navigator.credentials.create(creationOptions(started.options))
          : await navigator.credentials.get(requestOptions(started.options));
        const done = await post(`${routes[kind]}/finish`, {
          ...fields, ceremony: started.ceremony, credential: answer(credential),
        });
        window.location.assign(done.redirect);
      } catch (e) {
        status.textContent = e.message;
        status.hidden = false;
        button.disabled = false;
      }
    });
  });
})();
