// Sign in and create an account (contract 2.1, 2.2).

import * as api from "../api.js";
import { h, replace } from "../dom.js";

function field(label, input) {
  return h("label.field", {}, h("span", {}, label), input);
}

/** Shows the sign-in screen; `done(user)` once signed in. */
export function renderAuth(root, done, notice = null) {
  let mode = "login";
  const error = h("p.error", { role: "alert", id: "auth-error" });
  const email = h("input", { type: "email", name: "email", autocomplete: "email", required: true });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: "current-password",
    required: true,
    minlength: 8,
  });
  const username = h("input", {
    name: "username",
    autocomplete: "username",
    pattern: "[a-z0-9_]{3,30}",
    title: "3 to 30 lowercase letters, digits or underscores",
  });
  const displayName = h("input", { name: "display_name", autocomplete: "name", maxlength: 50 });
  const extra = h("div.extra", {}, field("Username", username), field("Display name (optional)", displayName));
  const submit = h("button.primary", { type: "submit" });
  const heading = h("h1", { id: "auth-title" });
  const switcher = h("button.link", { type: "button", onclick: () => setMode(mode === "login" ? "register" : "login") });
  const form = h(
    "form.auth-card",
    { "aria-labelledby": "auth-title", "aria-describedby": "auth-error", novalidate: false, onsubmit },
    h("div.brand", {}, h("img", { src: document.querySelector("link[rel=icon]").href, alt: "", width: 40, height: 40 }), "Chatterly"),
    heading,
    notice && h("p.notice", { role: "status" }, notice),
    field("Email", email),
    field("Password", password),
    extra,
    error,
    submit,
    h("p.switch", {}, switcher),
  );

  function setMode(next) {
    mode = next;
    const registering = mode === "register";
    heading.textContent = registering ? "Create your account" : "Sign in";
    submit.textContent = registering ? "Create account" : "Sign in";
    switcher.textContent = registering ? "I have an account: sign in" : "New here? Create an account";
    extra.hidden = !registering;
    username.required = registering;
    password.autocomplete = registering ? "new-password" : "current-password";
    error.textContent = "";
  }

  async function onsubmit(event) {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      const user =
        mode === "register"
          ? await api.register({
              email: email.value.trim(),
              password: password.value,
              username: username.value.trim().toLowerCase(),
              display_name: displayName.value.trim(),
            })
          : await api.login(email.value.trim(), password.value);
      done(user);
    } catch (failure) {
      error.textContent = failure.message;
      submit.disabled = false;
    }
  }

  setMode("login");
  replace(root, h("main.auth", {}, form));
  email.focus();
}
