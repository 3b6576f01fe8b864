"use strict";
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = document.getElementById("message");
  message.replaceChildren();
  try {
    const answer = await Gatehouse.api("/api/v1/login", { method: "POST", noRedirect: true, body: {
      username: document.getElementById("username").value, password: document.getElementById("password").value } });
    sessionStorage.setItem(Gatehouse.csrfKey, answer.csrf_token);
    const next = new URLSearchParams(location.search).get("next") || "/";
    location.href = next.startsWith("/") && !next.startsWith("//") ? next : "/";
  } catch (error) {
    Gatehouse.showError(message, error);
  }
});
