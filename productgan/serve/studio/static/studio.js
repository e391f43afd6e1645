// productgan studio: the form -> /api/generate | /api/interpolate | /api/zip, one column per served model.
// Every image is a PNG made by the server (the same code as `productgan generate`); nothing is drawn here.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const state = { info: null, columns: new Map(), last: null, runs: 0 };

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function showMessage(lines) {
  const box = $("#message");
  box.textContent = lines.join("\n");
  box.hidden = lines.length === 0;
}

function option(select, value, text = value) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  select.append(o);
}

function fmt(value) {
  return value === null || value === undefined ? "–" : Number(value).toPrecision(4).replace(/\.?0+$/, "");
}

// --- the columns: one per model, with its version, metrics, lineage and promotion record ------------------

function metricsRows(model, registry, champion) {
  const rows = [];
  const primary = registry && registry.primary_metric;
  const names = Object.keys(model.metrics || {}).sort((a, b) => (b === primary) - (a === primary));
  for (const name of names) {
    const value = model.metrics[name];
    let note = "";
    if (name === primary) {
      note = registry.greater_is_better ? "higher is better" : "lower is better";
      const base = champion && champion !== model && champion.metrics ? champion.metrics[name] : null;
      if (base !== null && base !== undefined && value !== null) {
        const delta = value - base;
        const better = registry.greater_is_better ? delta > 0 : delta < 0;
        note = `${delta >= 0 ? "+" : ""}${fmt(delta)} vs champion (${better ? "better" : "not better"}; ${note})`;
      }
    }
    rows.push([name, fmt(value), note, name === primary]);
  }
  return rows;
}

function fillTable(body, rows) {
  for (const [name, value, note, primary] of rows) {
    const tr = document.createElement("tr");
    if (primary) tr.className = "primary";
    for (const text of [name, value, note]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    body.append(tr);
  }
}

function buildColumns(info) {
  const holder = $("#columns");
  holder.replaceChildren();
  state.columns.clear();
  const champion = info.models.find((m) => m.key === "champion");
  for (const model of info.models) {
    const node = $("#column-template").content.firstElementChild.cloneNode(true);
    node.dataset.slot = model.key;
    $(".key", node).textContent = model.key;
    $(".version", node).textContent = model.version ? `version ${model.version}` : "";
    $(".uri", node).textContent = `${model.uri} · ${model.resolution} px${model.aspect === "1:1" ? "" : " " + model.aspect} · ${model.categories.length} categories`;
    // headline metrics (fd_domain, kid, class_accuracy ...) in view; per-category and bookkeeping ones folded
    const rows = metricsRows(model, info.registry, champion);
    const headline = rows.filter(([name]) => !name.includes("."));
    const detail = rows.filter(([name]) => name.includes("."));
    fillTable($(".metrics tbody", node), headline);
    if (detail.length) {
      $(".more summary", node).textContent = `${detail.length} more metrics (per category …)`;
      fillTable($(".more tbody", node), detail);
    } else {
      $(".more", node).hidden = true;
    }
    const lineage = model.lineage || {};
    $(".lineage", node).textContent = Object.entries(lineage)
      .map(([k, v]) => `${k}: ${/(_id|_hash|_version|commit)$/.test(k) ? String(v).slice(0, 12) : v}`).join(" · ");
    const promo = model.promotion || {};
    $(".promotion", node).textContent = promo.decision
      ? `registered: ${promo.decision} — ${promo.reason || ""}` : "";
    $(".zip", node).addEventListener("click", () => downloadZip(model.key));
    holder.append(node);
    state.columns.set(model.key, node);
  }
}

// --- the form --------------------------------------------------------------------------------------------

function value(id) {
  return $(`#${id}`).value.trim();
}

function edits() {
  const out = {};
  for (const field of state.info.edits) {
    const input = document.querySelector(`[data-edit="${field}"]`);
    if (!input) continue;
    if (input.type === "checkbox") { if (input.checked) out[field] = true; }
    else if (input.value.trim() !== "") out[field] = input.value.trim();
  }
  return out;
}

function request() {
  return { category: value("category"), n: value("n"), seed: value("seed"), truncation: value("truncation"),
           edits: edits() };
}

function image(png, name, title) {
  const link = document.createElement("a");
  link.href = `data:image/png;base64,${png}`;
  link.download = name;
  link.title = title;
  const img = document.createElement("img");
  img.className = "product";
  img.alt = name;
  img.dataset.name = name;
  img.src = link.href;
  link.append(img);
  return [link, img];
}

async function each(action) {
  // one request per column, in parallel; errors are collected per model and shown together
  const errors = [];
  const shown = [];
  await Promise.all([...state.columns].map(async ([key, node]) => {
    try {
      shown.push(...await action(key, node));
    } catch (err) {
      errors.push(state.columns.size > 1 ? `${key}: ${err.message}` : err.message);
    }
  }));
  await Promise.all(shown.map((img) => img.decode().catch(() => null)));
  return [errors, shown];
}

async function generate(event) {
  if (event) event.preventDefault();
  const start = performance.now();
  const req = request();
  showMessage([]);
  $("#generate").disabled = true;
  const [errors, shown] = await each(async (key, node) => {
    const t0 = performance.now();
    const result = await (await api("/api/generate", { model: key, ...req })).json();
    const tiles = result.images.map((im, i) => image(im.png, im.name, `${result.category} #${i} (seed ${result.seed})`));
    $(".grid", node).replaceChildren(...tiles.map(([link]) => link));
    $(".downloads", node).hidden = false;
    const timing = $(".timing", node);
    timing.textContent = `${result.images.length} images · server ${result.ms} ms · ` +
      `click to image ${Math.round(performance.now() - t0)} ms`;
    timing.dataset.serverMs = String(result.ms);
    return tiles.map(([, img]) => img);
  });
  const ms = performance.now() - start;
  $("#generate").disabled = false;
  if (errors.length === 0) state.last = req;
  showMessage(errors);
  const status = $("#status");
  status.textContent = errors.length ? "" : `${shown.length} images in ${Math.round(ms)} ms`;
  status.dataset.ms = ms.toFixed(1);
  status.dataset.images = String(shown.length);
  status.dataset.run = String(++state.runs);
}

async function interpolate() {
  const req = request();
  const mode = value("interp-mode");
  const body = { category: req.category, seed: req.seed, truncation: req.truncation, edits: req.edits,
                 steps: value("steps") };
  if (mode === "seeds") body.seeds = [req.seed, value("seed-b")];
  else body.categories = [req.category, value("category-b")];
  showMessage([]);
  const [errors] = await each(async (key, node) => {
    const result = await (await api("/api/interpolate", { model: key, ...body })).json();
    const tiles = result.frames.map((f, i) => {
      const label = i === 0 ? result.ends[0] : i === result.frames.length - 1 ? result.ends[1] : f.t.toFixed(2);
      const [link, img] = image(f.png, `interpolation_${i}.png`, label);
      const figure = document.createElement("figure");
      const caption = document.createElement("figcaption");
      caption.textContent = label;
      figure.append(link, caption);
      return [figure, img];
    });
    $(".strip", node).replaceChildren(...tiles.map(([figure]) => figure));
    return tiles.map(([, img]) => img);
  });
  showMessage(errors);
}

async function downloadZip(key) {
  if (!state.last) return;
  try {
    const response = await api("/api/zip", { model: key, ...state.last });
    const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = name ? name[1] : "productgan.zip";
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    showMessage([`${key}: ${err.message}`]);
  }
}

// --- start -----------------------------------------------------------------------------------------------

async function start() {
  let info;
  try {
    info = await (await api("/api/info")).json();
  } catch (err) {
    showMessage([`could not read the studio's models: ${err.message}`]);
    return;
  }
  state.info = info;
  const where = info.registry
    ? `${info.registry.model_name} from ${info.registry.tracking_uri}` : info.source;
  $("#source").textContent = where;
  for (const id of ["category", "category-b"]) {
    info.models[0].categories.forEach((name) => option($(`#${id}`), name));
  }
  $("#category-b").selectedIndex = Math.min(1, info.models[0].categories.length - 1);
  $("#n").value = info.defaults.n;
  $("#n").max = info.limits.max_n;
  $("#seed").value = info.defaults.seed;
  $("#seed-b").value = info.defaults.seed + 1;
  $("#steps").value = info.defaults.steps;
  $("#steps").max = info.limits.max_n;
  $("#size").max = info.limits.max_size;
  if (info.defaults.truncation !== null) $("#truncation").value = info.defaults.truncation;
  buildColumns(info);
  if (info.warning) showMessage([info.warning]);
  $("#controls").addEventListener("submit", generate);
  $("#interpolate").addEventListener("click", interpolate);
  $("#new-seed").addEventListener("click", () => { $("#seed").value = Math.floor(Math.random() * 2 ** 31); });
  $("#color-picker").addEventListener("input", (e) => { $("#color").value = e.target.value; });
  $("#color").addEventListener("input", (e) => {
    const hex = colourHex(e.target.value.trim());
    if (hex) $("#color-picker").value = hex;
  });
  await generate();  // the page opens with each model's first grid (the defaults), not empty panels
  document.body.dataset.ready = "true";
}

// A CSS colour (#rgb, #rrggbb, rgb(...), a name) as the #rrggbb a colour input shows, or null if it is none.
function colourHex(text) {
  if (!text || !CSS.supports("color", text)) return null;
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.fillStyle = text;  // the browser writes an opaque colour back as #rrggbb
  return /^#[0-9a-f]{6}$/i.test(ctx.fillStyle) ? ctx.fillStyle.toLowerCase() : null;
}

start();
