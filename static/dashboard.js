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
// A detail named *_rate is a fraction (0 to 1): shown as a percentage.
const formatted = (name, value) => (name.endsWith("_rate") && value !== null ? `${+(value * 100).toFixed(1)} %` : value);

function table(title, data, columns, empty) {
  const section = el("section", {class: "panel"}, el("h2", {}, title));
  if (data.note) section.append(el("p", {class: "note"}, data.note)); // not stored per site: every site's numbers
  if (!data.keys.length) {
    section.append(el("p", {class: "empty"}, empty || "Nothing yet in this period."));
    return section;
  }
  const head = el("tr", {}, ...columns.map((column) => el("th", {}, column)));
  const rows = data.details // the first of each row's details, one per column
    ? data.details.map((row) => el("tr", {}, ...Object.entries(row).slice(0, columns.length)
      .map(([name, value]) => cell(formatted(name, value)))))
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
    const tops = await Promise.all(panels.map(async ([title, metric, columns, empty]) =>
      table(title, await stat(metric, {limit: 10}), columns, empty)));
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

// Excluding this browser: the opt-out is kept by the site's own page (wa.js reads it there), so the link opens the
// site with #prisme-opt-out; wa.js sets it and comes back here with #opted-out=HOST, which this page remembers.
const EXCLUDED_KEY = "prismeLite.excludedHosts";
const excludedHosts = () => { try { return JSON.parse(localStorage.getItem(EXCLUDED_KEY)) || {}; } catch { return {}; } };
const ofSite = (host, site) => host === site || (site.startsWith("*.") && host.endsWith(site.slice(1)));

function rememberOptOut(sites) {
  const found = /^#opted-(out|in)=(.+)$/.exec(location.hash);
  if (!found) return;
  history.replaceState(null, "", location.pathname + location.search);
  const host = decodeURIComponent(found[2]), hosts = excludedHosts();
  if (found[1] === "out") hosts[host] = true;
  else delete hosts[host];
  localStorage.setItem(EXCLUDED_KEY, JSON.stringify(hosts));
  const site = sites.find((candidate) => ofSite(host, candidate));
  if (site) state.site = site; // back on the site whose link was followed
}

function exclusion() {
  const box = $("#exclusion");
  if (!state.site) {
    box.replaceChildren("Pick a site to exclude this browser's visits from it.");
    return;
  }
  const excluded = Object.keys(excludedHosts()).filter((host) => ofSite(host, state.site));
  const page = state.site.startsWith("*.") ? null : `https://${state.site}/`;
  const hint = ` (or open any page of ${state.site} with #prisme-opt-${excluded.length ? "in" : "out"} at the end`
    + " of its address)";
  if (excluded.length) {
    box.replaceChildren(el("span", {id: "excluded"}, `This browser is excluded from ${excluded.join(", ")}: its`
      + " visits are not counted."), " ",
      ...(page ? [el("a", {href: `${page}#prisme-opt-in`, id: "include"}, "Count it again")] : []), hint);
  } else {
    box.replaceChildren(el("span", {id: "counted"}, `This browser's visits to ${state.site} are counted.`), " ",
      ...(page ? [el("a", {href: `${page}#prisme-opt-out`, id: "exclude"}, "Exclude this browser")] : []), hint);
  }
}

async function start() {
  const sites = (await getJSON("/api/v1/sites")).sites;
  rememberOptOut(sites);
  const picker = $("#site");
  const options = sites.map((site) => el("option", {value: site}, site));
  picker.replaceChildren(el("option", {value: ""}, "All sites"), ...options);
  picker.value = state.site;
  picker.addEventListener("change", () => { state.site = picker.value; exclusion(); render(); });
  exclusion();
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
