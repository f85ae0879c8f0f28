// Verdicts on the evidence page: kept in this browser (localStorage, per run), downloaded as the CSV that
// `brandsentry feedback import` reads (listing_id, verdict, reviewer, note). Plain JS, no network.
(function () {
  "use strict";
  var run = document.body.getAttribute("data-run") || "evidence";
  var key = "brandsentry-verdicts:" + (document.body.getAttribute("data-key") || run);
  var items = Array.prototype.slice.call(document.querySelectorAll("section.item"));
  var state = { reviewer: "", answers: {} };
  var storage = null;
  try {
    storage = window.localStorage;
    storage.setItem(key + ":probe", "1");
    storage.removeItem(key + ":probe");
  } catch (error) {
    // a sandboxed frame (the MLflow UI) has no storage: answers last until the page is closed
    storage = null;
    document.getElementById("storage").textContent =
      "This view cannot keep answers (and may block downloads): open RUN_DIR/_evidence/index.html itself.";
  }
  if (storage && storage.getItem(key)) {
    try {
      state = JSON.parse(storage.getItem(key));
    } catch (error) {
      state = {};
    }
    state = { reviewer: String(state.reviewer || ""), answers: state.answers || {} };
  }

  // The feedback import's verdict for a page answer; null for "unsure", which it does not know.
  function importVerdict(answer, decision) {
    if (answer === "counterfeit") return "confirmed_counterfeit";
    if (answer === "authentic") return decision === "flag" ? "false_positive" : "authentic";
    return null;
  }

  // RFC 4180 quoting; fields with surrounding blanks are quoted too (the import strips unquoted ones).
  function csvField(text) {
    text = String(text);
    return /[",\r\n]|^\s|\s$/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function csv() {
    var lines = ["listing_id,verdict,reviewer,note"];
    items.forEach(function (item) {
      var id = item.getAttribute("data-listing");
      var answer = state.answers[id];
      var verdict = answer && importVerdict(answer.verdict, item.getAttribute("data-decision"));
      if (verdict) {
        lines.push([id, verdict, state.reviewer.trim(), answer.note || ""].map(csvField).join(","));
      }
    });
    return lines.join("\r\n") + "\r\n";
  }

  function save() {
    if (storage) storage.setItem(key, JSON.stringify(state));
    var answered = items.filter(function (item) {
      var answer = state.answers[item.getAttribute("data-listing")];
      return answer && answer.verdict;
    }).length;
    document.getElementById("answered").textContent = answered + " of " + items.length + " answered";
  }

  items.forEach(function (item) {
    var id = item.getAttribute("data-listing");
    var buttons = Array.prototype.slice.call(item.querySelectorAll("button[data-verdict]"));
    var note = item.querySelector("input.note");
    function show() {
      var answer = state.answers[id] || {};
      buttons.forEach(function (button) {
        button.setAttribute("aria-pressed", String(button.getAttribute("data-verdict") === answer.verdict));
      });
      note.value = answer.note || "";
    }
    buttons.forEach(function (button) {
      button.addEventListener("click", function () {
        var answer = state.answers[id] || {};
        answer.verdict = button.getAttribute("data-verdict");
        state.answers[id] = answer;
        show();
        save();
      });
    });
    note.addEventListener("input", function () {
      var answer = state.answers[id] || {};
      answer.note = note.value;
      state.answers[id] = answer;
      save();
    });
    show();
  });

  var reviewer = document.getElementById("reviewer");
  reviewer.value = state.reviewer || "";
  reviewer.addEventListener("input", function () {
    state.reviewer = reviewer.value;
    save();
  });
  document.getElementById("download").addEventListener("click", function () {
    if (!state.reviewer.trim()) {
      document.getElementById("storage").textContent = "Enter your name as reviewer first.";
      reviewer.focus();
      return;
    }
    var link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([csv()], { type: "text/csv" }));
    link.download = "verdicts-" + run.replace(/[^A-Za-z0-9_.-]+/g, "_") + ".csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
  save();
})();
