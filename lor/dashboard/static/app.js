// lor run dashboard: poll the JSON API, fill the tables, reload the plots. No dependencies.
"use strict";

const POLL_MS = 2000;
const PLOT_MS = 4000;
let selected = null;
let lastPlots = 0;

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fillRuns(runs) {
  const body = document.querySelector("#runs tbody");
  body.replaceChildren();
  for (const run of runs) {
    const row = body.insertRow();
    row.dataset.runId = run.id;
    if (run.id === selected) row.classList.add("selected");
    for (const key of ["id", "name", "kind", "release", "status", "pending", "claimed", "done", "failed"]) {
      cell(row, String(run[key]));
    }
    row.addEventListener("click", () => select(run.id));
  }
  if (selected === null && runs.length) select(runs[0].id);
}

function noneRow(body, columns, text) {
  if (body.rows.length) return;
  const td = cell(body.insertRow(), text);
  td.colSpan = columns;
  td.className = "none";
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "unknown";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function reloadImage(id, src) {
  const img = document.getElementById(id);
  const next = new Image();
  next.onload = () => { img.src = next.src; img.hidden = false; };
  next.src = `${src}?t=${Date.now()}`;
}

function fillRun(run) {
  document.getElementById("run").hidden = false;
  document.getElementById("run-title").textContent =
    `Run ${run.run_id} (${run.name}) — ${run.status}, release ${run.release}`;
  for (const state of ["done", "pending", "claimed", "failed"]) {
    document.getElementById(`run-${state}`).textContent = run.counts[state].toLocaleString("en");
  }
  document.getElementById("run-rate").textContent = run.rate_per_s.toFixed(1);
  document.getElementById("run-eta").textContent = run.remaining ? duration(run.eta_s) : "done";
  const stalled = document.getElementById("run-stalled");
  stalled.hidden = !run.stalled;
  stalled.textContent = run.stalled ? `Stalled: ${run.stalled}` : "";

  const holders = document.querySelector("#holders tbody");
  holders.replaceChildren();
  for (const h of run.holders) {
    const row = holders.insertRow();
    cell(row, h.worker);
    cell(row, String(h.items));
    cell(row, h.heartbeat_age_s === null ? "never" : `${h.heartbeat_age_s.toFixed(1)} s ago`);
    cell(row, h.alive ? "alive" : "dead or silent", h.alive ? "alive" : "dead");
  }
  noneRow(holders, 4, "no claims held");
  const failures = document.querySelector("#failures tbody");
  failures.replaceChildren();
  for (const f of run.failures) {
    const row = failures.insertRow();
    cell(row, f.error);
    cell(row, String(f.items));
    cell(row, String(f.failed));
    cell(row, new Date(f.last_seen).toLocaleTimeString());
  }
  noneRow(failures, 4, "no failures");
  document.getElementById("truth").hidden = run.with_truth === 0;
  document.getElementById("truth-count").textContent = run.with_truth.toLocaleString("en");
}

function reloadPlots(run) {
  const base = `/plot/runs/${run.run_id}`;
  reloadImage("plot-progress", `${base}/progress.png`);
  reloadImage("plot-nz", `${base}/nz.png`);
  reloadImage("plot-ood", `${base}/ood.png`);
  if (run.with_truth) reloadImage("plot-truth", `${base}/truth.png`);
}

function select(runId) {
  selected = runId;
  lastPlots = 0;
  for (const row of document.querySelectorAll("#runs tbody tr")) {
    row.classList.toggle("selected", Number(row.dataset.runId) === runId);
  }
  refresh();
}

async function fillCalibrations() {
  const versions = await getJSON("/api/calibrations");
  const menu = document.getElementById("calibrations");
  menu.replaceChildren();
  for (const v of versions) {
    const option = document.createElement("option");
    option.value = v.id;
    option.textContent = `${v.id}: ${v.name} (${v.method}, ${v.tracts} tracts)`;
    menu.append(option);
  }
  const show = () => reloadImage("plot-calibration", `/plot/calibrations/${menu.value}.png`);
  menu.onchange = show;
  if (versions.length) show();
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    fillRuns(await getJSON("/api/runs"));
    if (selected !== null) {
      const run = await getJSON(`/api/runs/${selected}`);
      fillRun(run);
      if (Date.now() - lastPlots > PLOT_MS) {
        lastPlots = Date.now();
        reloadPlots(run);
      }
    }
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    document.getElementById("updated").textContent = `cannot reach the server (${err.message}); retrying`;
  } finally {
    busy = false;
  }
}

fillCalibrations();
refresh();
setInterval(refresh, POLL_MS);
