// Progressive enhancement only: the forms work without it. Loaded as a file, so it runs under a
// Content-Security-Policy without 'unsafe-inline'.
(function () {
  "use strict";

  var csrf = document.querySelector('meta[name="csrf-token"]');
  var lang = document.documentElement.lang;
  var labels = {
    pl: ["bardzo słabe", "słabe", "przeciętne", "silne", "bardzo silne"],
    en: ["very weak", "weak", "fair", "strong", "very strong"]
  }[lang === "en" ? "en" : "pl"];
  var strengthWord = lang === "en" ? "Strength: " : "Siła hasła: ";

  function fill(list, items) {
    while (list.firstChild) list.removeChild(list.firstChild);
    items.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      list.appendChild(li);
    });
  }

  // The error summary of a refused form takes the focus, so it is read first (GOV.UK's pattern).
  var summary = document.querySelector("[data-error-summary]");
  if (summary) {
    summary.focus();
    summary.addEventListener("click", function (event) {
      var link = event.target.closest("a[href^='#']");
      var target = link && document.getElementById(link.getAttribute("href").slice(1));
      if (!target) return;
      event.preventDefault();
      var label = document.querySelector("label[for='" + target.id + "']");
      (label || target).scrollIntoView();
      target.focus();
    });
  }

  // The strength meter: asks the server (the same policy that will judge the form) as you type. Its
  // problems replace the server's in the field's one error list, so the page never contradicts itself.
  document.querySelectorAll("input[data-meter]").forEach(function (input) {
    var box = document.getElementById(input.getAttribute("data-meter"));
    var errors = document.getElementById(input.getAttribute("data-errors"));
    if (!box || !errors || !csrf) return;
    var field = input.closest(".field");
    var bar = box.querySelector(".bar span");
    var text = box.querySelector(".meter-text");
    var suggestions = box.querySelector(".meter-suggestions");
    var timer = null;
    var sequence = 0;

    function verdict(messages) {
      fill(errors, messages);
      input.setAttribute("aria-invalid", messages.length ? "true" : "false");
      if (field) field.classList.toggle("field-error", messages.length > 0);
    }

    function show(result) {
      box.hidden = false;
      box.setAttribute("data-score", String(result.score));
      box.setAttribute("data-ok", result.ok ? "true" : "false");
      bar.className = "w" + result.score;
      text.textContent = strengthWord + labels[result.score] + (result.warning ? ". " + result.warning : "");
      verdict(result.problems.map(function (p) { return p.message; }));
      fill(suggestions, result.suggestions);
    }

    function check() {
      var mine = ++sequence;
      if (!input.value) { box.hidden = true; verdict([]); return; }
      fetch(box.getAttribute("data-url"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf.content },
        body: JSON.stringify({ password: input.value })
      }).then(function (response) {
        return response.ok ? response.json() : null;
      }).then(function (result) {
        if (result && mine === sequence) show(result);
      }).catch(function () { /* the server will say the same after submit */ });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(check, 250);
    });
    input.addEventListener("pwdrst:filled", check);
  });

  // Passphrase suggestions: five words from the interface language's list, chosen with
  // crypto.getRandomValues, put in the field shown, and scored by the meter like anything typed.
  var wordLists = {};
  function randomBelow(n) {
    // Rejection sampling: no word more likely than another.
    var limit = Math.floor(0x100000000 / n) * n;
    var buffer = new Uint32Array(1);
    do { crypto.getRandomValues(buffer); } while (buffer[0] >= limit);
    return buffer[0] % n;
  }
  document.querySelectorAll("button[data-suggest]").forEach(function (button) {
    var input = document.getElementById(button.getAttribute("data-suggest"));
    if (!input || !window.crypto || !window.fetch) return;
    var url = button.getAttribute("data-words");
    var serverSuggestion = button.parentNode.querySelector("[data-server-suggestion]");
    if (serverSuggestion) serverSuggestion.hidden = true;
    button.hidden = false;
    button.addEventListener("click", function () {
      (wordLists[url] || (wordLists[url] = fetch(url).then(function (r) { return r.text(); }).then(function (text) {
        return text.split("\n").filter(Boolean);
      }))).then(function (words) {
        var chosen = [];
        for (var i = 0; i < 5; i++) chosen.push(words[randomBelow(words.length)]);
        input.value = chosen.join("-");
        var toggle = document.querySelector("button[data-show='" + input.id + "']");
        if (toggle && input.type === "password") toggle.click();  // shown, so it can be written down
        input.focus();
        input.dispatchEvent(new Event("pwdrst:filled"));
      });
    });
  });

  // Caps Lock warning on password fields, from the key events' own modifier state.
  document.querySelectorAll("input[data-capslock]").forEach(function (input) {
    var warning = document.getElementById(input.getAttribute("data-capslock"));
    function update(event) {
      if (event.getModifierState) warning.hidden = !event.getModifierState("CapsLock");
    }
    input.addEventListener("keydown", update);
    input.addEventListener("keyup", update);
    input.addEventListener("blur", function () { warning.hidden = true; });
  });

  // Show-password toggles inside the fields: the label stays, aria-pressed says whether it is shown.
  document.querySelectorAll("button[data-show]").forEach(function (button) {
    var input = document.getElementById(button.getAttribute("data-show"));
    if (!input) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var showing = input.type === "text";
      input.type = showing ? "password" : "text";
      button.setAttribute("aria-pressed", showing ? "false" : "true");
    });
  });
})();

// Copy buttons (the helpdesk's shown-once link).
(function () {
  "use strict";
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        button.textContent = button.getAttribute("data-copied");
      });
    });
  });
})();
