/* prisme_lite dashboard: reads the stats API with the login cookie and draws everything with the DOM
   (no HTML from data ever: every value goes in as text). */
"use strict";
// Whole UTC days (months) that end with today, by the server's clock: "7 days" is today and the six before, so
// the chart has the same buckets at any hour (28 of 6 hours; 30 days are 30 days). `to` is exclusive.
const PERIODS = {
  today: ["now/d", "now/d+1d"], "7d": ["now-6d/d", "now/d+1d"], "30d": ["now-29d/d", "now/d+1d"],
  "12mo": ["now-11M/M", "now/M+1M"],
};
const state = {site: "", period: "7d", from: "", to: ""};
const $ = (selector) => document.querySelector(selector);

function el(tag, attributes, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

async function getJSON(path, params) {
  const answer = await fetch(path + (params ? `?${new URLSearchParams(params)}` : ""), {credentials: "same-origin"});
  if (answer.status === 401) { location.reload(); throw new Error("logged out"); }
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || answer.statusText);
  return body;
}

function windowParams(extra) {
  const [from, to] = state.period === "custom" ? [state.from, state.to] : PERIODS[state.period];
  const params = {from, to, ...(extra || {})};
  if (state.site) params.site = state.site;
  return params;
}

const stat = (metric, extra) => getJSON(`/api/v1/stats/${metric}`, windowParams(extra));

const nextDay = (date) => new Date(Date.parse(`${date}T00:00:00Z`) + 86400000).toISOString().slice(0, 10);

function day(ms, withTime) {
  const date = new Date(ms);
  const text = date.toISOString().slice(5, 10);
  return withTime ? `${text} ${date.toISOString().slice(11, 16)}` : text;
}

function chart(pageviews, visitors) {
  const width = 720, height = 220, pad = 28, count = pageviews.keys.length;
  const top = Math.max(1, ...pageviews.values, ...visitors.values);
  const step = (width - 2 * pad) / Math.max(1, count);
  const y = (value) => height - pad - (value / top) * (height - 2 * pad);
  const label = "visitors and pageviews";
  const svg = el("svg:svg", {viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, id: "chart"});
  svg.append(el("svg:line", {x1: pad, x2: width - pad, y1: height - pad, y2: height - pad, class: "axis"}));
  svg.append(el("svg:text", {x: 2, y: pad, class: "label"}, String(top)));
  const hours = pageviews.keys.length > 1 && pageviews.keys[1] - pageviews.keys[0] < 86400000;
  pageviews.keys.forEach((key, n) => {
    const bar = el("svg:rect", {x: pad + n * step + 1, y: y(pageviews.values[n]), width: Math.max(1, step - 2),
      height: height - pad - y(pageviews.values[n]), class: "bar"});
    const tip = `${day(key, hours)}: ${pageviews.values[n]} pageviews, ${visitors.values[n]} visitors`;
    bar.append(el("svg:title", {}, tip));
    svg.append(bar);
    if (n % Math.ceil(count / 8) === 0) {
      svg.append(el("svg:text", {x: pad + n * step, y: height - 8, class: "label"}, day(key, hours)));
    }
  });
  const points = visitors.values.map((value, n) => `${pad + n * step + step / 2},${y(value)}`).join(" ");
  svg.append(el("svg:polyline", {points, class: "line"}));
  return svg;
}

const cell = (value) => el("td", {}, value === null ? "-" : String(value));

function table(title, data, columns) {
  const section = el("section", {class: "panel"}, el("h2", {}, title));
  if (data.note) section.append(el("p", {class: "note"}, data.note)); // not stored per site: every site's numbers
  if (!data.keys.length) {
    section.append(el("p", {class: "empty"}, "Nothing yet in this period."));
    return section;
  }
  const head = el("tr", {}, ...columns.map((column) => el("th", {}, column)));
  const rows = data.details
    ? data.details.map((row) => el("tr", {}, ...Object.values(row).map((value) => cell(value))))
    : data.keys.map((key, n) => el("tr", {}, cell(key), el("td", {class: "n"}, String(data.values[n]))));
  section.append(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  return section;
}

function number(label, value, id) {
  const shown = el("span", {class: "value", id}, String(value));
  return el("div", {class: "number"}, shown, el("span", {class: "name"}, label));
}

// The render the page shows: a period or site picked while answers are on their way makes them stale.
let latest = 0;

async function render() {
  const ticket = ++latest;
  const main = $("#report");
  main.replaceChildren(el("p", {class: "loading"}, "Loading…"));
  try {
    const [overview, pageviews, visitors] = await Promise.all([stat("overview"), stat("pageviews"), stat("visitors")]);
    if (ticket !== latest) return;
    const panels = JSON.parse($("#report").dataset.panels); // each family's tables, from the server
    const tops = await Promise.all(panels.map(async ([title, metric, columns]) =>
      table(title, await stat(metric, {limit: 10}), columns)));
    if (ticket !== latest) return;
    const numbers = el("div", {class: "numbers"},
      number("Visitors", overview.values[0], "visitors-total"),
      number("Pageviews", overview.values[1], "pageviews-total"),
      number("Sessions", overview.values[2], "sessions-total"),
      number("Bounce rate", `${overview.values[3]} %`, "bounce-rate"),
      number("Visit duration", `${overview.values[4]} s`, "visit-duration"));
    main.replaceChildren(numbers, el("section", {class: "panel wide"}, chart(pageviews, visitors)));
    if (!overview.values[1]) {
      main.append(el("section", {class: "panel wide empty-state", id: "empty"},
        el("h2", {}, "No pageviews yet"),
        el("p", {}, "Paste this into the pages of your site (its host must be a registered origin):"),
        el("pre", {}, `<script defer src="${location.origin}/static/wa.js"></script>`)));
    }
    main.append(el("div", {class: "grid"}, ...tops));
  } catch (error) {
    if (ticket !== latest) return;
    main.replaceChildren(el("p", {class: "error"}, `Could not load the stats: ${error.message}`));
  }
}

async function start() {
  const sites = (await getJSON("/api/v1/sites")).sites;
  const picker = $("#site");
  const options = sites.map((site) => el("option", {value: site}, site));
  picker.replaceChildren(el("option", {value: ""}, "All sites"), ...options);
  picker.addEventListener("change", () => { state.site = picker.value; render(); });
  for (const button of document.querySelectorAll("[data-period]")) {
    button.addEventListener("click", () => {
      state.period = button.dataset.period;
      for (const other of document.querySelectorAll("[data-period]")) other.classList.toggle("active", other === button);
      $("#custom").hidden = state.period !== "custom";
      if (state.period !== "custom") render();
    });
  }
  $("#custom").addEventListener("submit", (event) => {
    event.preventDefault();
    const [from, to] = [$("#from").value, $("#to").value];
    if (from > to) { // YYYY-MM-DD: text order is date order
      const sentence = `The start (${from}) is after the end (${to}): pick a start on or before the end.`;
      latest++; // what was loading is stale
      $("#report").replaceChildren(el("p", {class: "error", id: "range-error"}, sentence));
      return;
    }
    state.from = from;
    state.to = nextDay(to); // the whole last day, to its last millisecond: `to` is exclusive
    render();
  });
  render();
}

start();
