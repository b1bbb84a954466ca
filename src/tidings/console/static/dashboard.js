// The dashboard's charts, drawn from the JSON the page carries (#dashboard-data).
(function () {
  var source = document.getElementById("dashboard-data");
  if (!source || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#6b7385";
  new Chart(document.getElementById("chart-day"), {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: "received", data: data.incoming, backgroundColor: "#3056d3" },
        { label: "processed", data: data.outgoing, backgroundColor: "#1a7f4b" },
        { label: "errors", data: data.errors, backgroundColor: "#b42318" }
      ]
    },
    options: {
      animation: false, maintainAspectRatio: false,
      plugins: { legend: { position: "bottom" } },
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { grid: { display: false } } }
    }
  });
  var tones = { processed: "#1a7f4b", ignored: "#9aa3b2", deliveryFailed: "#b42318",
                routingFailed: "#e06c5a", tooOld: "#e0a100" };
  new Chart(document.getElementById("chart-status"), {
    type: "bar",
    data: {
      labels: data.statuses,
      datasets: [
        { label: "last hour", data: data.hour, backgroundColor: data.statuses.map(function (s) { return tones[s]; }) },
        { label: "last day", data: data.day, backgroundColor: data.statuses.map(function (s) { return tones[s] + "66"; }) }
      ]
    },
    options: {
      animation: false, maintainAspectRatio: false, indexAxis: "y",
      plugins: { legend: { position: "bottom" } },
      scales: { x: { beginAtZero: true, ticks: { precision: 0 } }, y: { grid: { display: false } } }
    }
  });
})();
