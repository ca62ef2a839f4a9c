// Filter boxes with suggestions (templates/metering/_lookup.html): an input marked
// data-suggest="<url>" keeps its datalist following the typing. The page lists the first
// organisations by name; after two characters and a short pause this asks
// <url>?q=<text> (JSON {"items": [{"name", "slug"}]}) and lists the matches instead.
// Without JavaScript the box still takes any name or slug; the list is then the page's.
(function () {
  "use strict";

  var PAUSE_MS = 200;

  function follow(input) {
    var list = document.getElementById(input.getAttribute("list"));
    if (!list) return;
    var timer = null;
    var latest = 0; // the number of the last question asked: older answers are dropped
    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      var text = input.value.trim();
      if (text.length < 2) return;
      timer = window.setTimeout(function () {
        var asked = ++latest;
        var url = input.dataset.suggest + "?q=" + encodeURIComponent(text);
        fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
          .then(function (response) {
            return response.ok ? response.json() : null;
          })
          .then(function (body) {
            if (!body || asked !== latest) return; // a later text has been asked since
            var options = document.createDocumentFragment();
            body.items.forEach(function (item) {
              var option = document.createElement("option");
              option.value = item.name;
              option.textContent = item.slug;
              options.appendChild(option);
            });
            list.replaceChildren(options);
          })
          .catch(function () {
            // No list is no harm: the box still takes any name or slug.
          });
      }, PAUSE_MS);
    });
  }

  document.querySelectorAll("input[data-suggest]").forEach(follow);
})();
