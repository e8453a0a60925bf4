// Tollway admin UI: the little the pages do in the browser. No framework, no build step.
"use strict";

// Overview: fetch the numbers every few seconds and put them in place.
function refreshOverview(box) {
  const source = box.dataset.source;
  const tick = async () => {
    try {
      const answer = await fetch(source, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (answer.status === 401) { window.location.assign("/ui/login"); return; }
      if (!answer.ok) return;
      const data = await answer.json();
      for (const cell of box.querySelectorAll("[data-field]")) {
        const value = data[cell.dataset.field];
        if (value === null || value === undefined) { cell.textContent = "–"; continue; }
        if (cell.dataset.money) cell.textContent = value.toFixed(4) + " " + cell.dataset.money;
        else if (cell.dataset.unit) cell.textContent = value.toFixed(1) + cell.dataset.unit;
        else cell.textContent = String(value);
      }
      const list = document.getElementById("degraded");
      if (list) {
        list.replaceChildren();
        const items = data.degraded.length ? data.degraded : [null];
        for (const label of items) {
          const item = document.createElement("li");
          item.className = label ? "bad" : "good";
          item.textContent = label || "All dependencies answer; nothing is spooled.";
          list.appendChild(item);
        }
      }
      const stamp = document.getElementById("refreshed");
      if (stamp) stamp.textContent = "Last: " + new Date().toLocaleTimeString();
    } catch (err) {
      // The gateway restarting or the network gone: try again at the next tick.
    }
  };
  tick();
  setInterval(tick, 3000);
}

// The secret of a new key: copy it with one click.
function copyButton(button) {
  button.addEventListener("click", async () => {
    const field = document.getElementById(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(field.value);
    } catch (err) {
      field.select();
      document.execCommand("copy");
    }
    const note = document.getElementById("copied");
    if (note) note.hidden = false;
  });
}

// Spend: one line per group over the days.
function drawChart(box) {
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const palette = ["#1f4e79", "#c0392b", "#27ae60", "#8e44ad", "#d68910", "#148f77"];
  const series = [{}];
  const columns = [data.days];
  data.series.forEach(([name, values], i) => {
    series.push({ label: name, stroke: palette[i % palette.length], width: 2,
                  value: (u, v) => v === null ? "–" : v.toFixed(4) + " " + data.currency });
    columns.push(values);
  });
  const width = () => Math.max(320, box.clientWidth);
  const plot = new uPlot({ width: width(), height: 300, series, scales: { x: { time: true } },
                           axes: [{}, { label: data.currency, size: 70 }] }, columns, box);
  window.addEventListener("resize", () => plot.setSize({ width: width(), height: 300 }));
}

document.addEventListener("DOMContentLoaded", () => {
  const overview = document.getElementById("overview");
  if (overview) refreshOverview(overview);
  for (const button of document.querySelectorAll("[data-copy]")) copyButton(button);
  const chart = document.getElementById("chart");
  if (chart && window.uPlot) drawChart(chart);
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
});
