/* prisme_lite dashboard: reads the stats API with the login cookie (or a shared dashboard's token) and draws
   everything with the DOM (no HTML from data ever: every value goes in as text). */
"use strict";
// Whole UTC days (months) that end with today, by the server's clock: "7 days" is today and the six before, so
// the chart has the same buckets at any hour (28 of 6 hours; 30 days are 30 days). `to` is exclusive.
const PERIODS = {
  today: ["now/d", "now/d+1d"], "7d": ["now-6d/d", "now/d+1d"], "30d": ["now-29d/d", "now/d+1d"],
  "12mo": ["now-11M/M", "now/M+1M"],
};
// What the page shows, and what its URL says (readURL, writeURL): a filtered view is a link to bookmark or share.
// `to` is the custom range's exclusive end; `filters` holds one value per stats filter, set by clicking a row.
const state = {site: "", period: "7d", from: "", to: "", filters: {}, compare: false};
const $ = (selector) => document.querySelector(selector);
// Each family's tables, from the server: [title, metric, columns, filter] (see Family.panels).
const PANELS = JSON.parse($("#report").dataset.panels);
// A shared dashboard (/share/<token>): one site's, read-only, no login; its token goes with every question, and
// each count under the server's share_min_count comes back as the text "< N" (a rate or average of one as null).
const {share: SHARE, shareSite: SHARE_SITE, least: LEAST} = $("#report").dataset; // empty on the login's dashboard
const isHidden = (value) => typeof value === "string" && /^< [0-9]+$/.test(value);
// A count as the chart draws it: a hidden one at the most it can be (and marked so), the others as they are.
const plotted = (value) => isHidden(value) ? Number(LEAST) - 1 : value;

function el(tag, attributes, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

async function getJSON(path, params) {
  const answer = await fetch(path + (params ? `?${new URLSearchParams(params)}` : ""),
    {credentials: "same-origin", headers: SHARE ? {"X-Prisme-Share": SHARE} : {}});
  if (answer.status === 401 && !SHARE) { location.reload(); throw new Error("logged out"); }
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || answer.statusText);
  return body;
}

function windowParams(extra) {
  const [from, to] = state.period === "custom" ? [state.from, state.to] : PERIODS[state.period];
  const params = {from, to, ...state.filters, ...(extra || {})};
  if (state.site) params.site = state.site;
  return params;
}

// A panel's filter: its name, and where a row's key ends ("client " takes the key up to its first space).
function panelFilter(spec) {
  const [, name, separator] = /^([a-z-]*)(.*)$/.exec(spec || "");
  return {name, valueOf: (key) => separator && key.includes(separator) ? key.slice(0, key.indexOf(separator)) : key};
}

// What each filter is called on its chip: its panel's first column ("Page: /about").
const FILTER_LABELS = Object.fromEntries(PANELS.filter((panel) => panel[3])
  .map(([, , columns, spec]) => [panelFilter(spec).name, columns[0].split(" ")[0]]));

// The URL: ?site=…&period=…(&from=YYYY-MM-DD&to=YYYY-MM-DD, both days shown whole)&path=/about&… (one per filter).
function readURL() {
  const query = new URLSearchParams(location.search);
  state.site = SHARE ? SHARE_SITE : query.get("site") || "";
  const period = query.get("period");
  state.period = Object.hasOwn(PERIODS, period) || period === "custom" ? period : "7d";
  const [from, to] = [query.get("from") || "", query.get("to") || ""];
  const date = /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/;
  if (state.period === "custom" && !(date.test(from) && date.test(to) && from <= to)) state.period = "7d";
  [state.from, state.to] = state.period === "custom" ? [from, nextDay(to)] : ["", ""];
  state.compare = query.get("compare") === "1";
  state.filters = {};
  for (const [name, value] of query) if (Object.hasOwn(FILTER_LABELS, name) && value) state.filters[name] = value;
}

function writeURL() {
  const query = new URLSearchParams();
  if (state.site && !SHARE) query.set("site", state.site);
  if (state.period !== "7d") query.set("period", state.period);
  if (state.period === "custom") {
    query.set("from", state.from);
    query.set("to", previousDay(state.to));
  }
  if (state.compare) query.set("compare", "1");
  for (const [name, value] of Object.entries(state.filters)) query.set(name, value);
  const url = `${location.pathname}${query.size ? `?${query}` : ""}`;
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
}

// The controls say what state says: after a URL is read (a bookmark, the back button).
function showState() {
  if (!SHARE) {
    $("#site").value = state.site;
    if ($("#site").value !== state.site) state.site = ""; // a site no longer registered
    exclusion();
  }
  for (const button of document.querySelectorAll("[data-period]")) {
    button.classList.toggle("active", button.dataset.period === state.period);
  }
  $("#custom").hidden = state.period !== "custom";
  if (state.period === "custom") [$("#from").value, $("#to").value] = [state.from, previousDay(state.to)];
  const chips = Object.entries(state.filters).map(([name, value]) => {
    const chip = el("button", {type: "button", class: "chip", "data-filter": name, title: `Remove this filter: ${value}`},
      el("span", {class: "chip-name"}, `${FILTER_LABELS[name]}:`), " ",
      el("span", {class: "chip-value"}, name === "country" && value === "XX" ? "Unknown" : value),
      el("span", {class: "chip-x", "aria-hidden": "true"}, "×"));
    chip.setAttribute("aria-label", `Remove the filter ${FILTER_LABELS[name]}: ${value}`);
    chip.addEventListener("click", () => { delete state.filters[name]; changed(); });
    return chip;
  });
  if (chips.length > 1) {
    const clear = el("button", {type: "button", class: "chip clear", id: "clear-filters"}, "Clear filters");
    clear.addEventListener("click", () => { state.filters = {}; changed(); });
    chips.push(clear);
  }
  $("#filters").replaceChildren(...chips);
  $("#filters").hidden = !chips.length;
}

// A control changed state: the URL follows, then the page.
function changed() {
  writeURL();
  showState();
  render();
}

const stat = (metric, extra) => getJSON(`/api/v1/stats/${metric}`, windowParams(extra));

const nextDay = (date) => new Date(Date.parse(`${date}T00:00:00Z`) + 86400000).toISOString().slice(0, 10);
const previousDay = (date) => new Date(Date.parse(`${date}T00:00:00Z`) - 86400000).toISOString().slice(0, 10);

const DAY_MS = 86400000;
const iso = (ms) => new Date(ms).toISOString();
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// A bucket's name in its tooltip: its UTC day (and hour), with the year.
function bucketName(ms, step) {
  const text = iso(ms);
  return step < DAY_MS ? `${text.slice(0, 10)} ${text.slice(11, 16)}` : text.slice(0, 10);
}

// A label under the chart: "06:00" within a day, "Nov 14" for a day, "Nov 14 2025" where the year changes.
function axisName(ms, step, withYear) {
  const date = new Date(ms);
  if (step < DAY_MS && date.getUTCHours()) return iso(ms).slice(11, 16);
  const name = `${MONTHS[date.getUTCMonth()]} ${date.getUTCDate()}`;
  return withYear ? `${name} ${date.getUTCFullYear()}` : name;
}

// 0 and a few round values above the highest one (1, 2 or 5 times a power of ten apart).
function yTicks(highest) {
  const raw = Math.max(1, highest) / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((n) => n * power).find((n) => n >= raw));
  const ticks = [];
  for (let value = 0; value < highest + step; value += step) ticks.push(value);
  return ticks.length > 1 ? ticks : [0, step];
}

// Which buckets get a label: day starts when the buckets are hours of several days, then every k-th, so that
// labels keep ~64 px apart at any width (a phone's 390 px too).
function labelled(keys, step, room) {
  const starts = keys.map((_key, n) => n).filter((n) => step >= DAY_MS || keys.length * step <= DAY_MS
    || keys[n] % DAY_MS === 0);
  const every = Math.ceil(starts.length / Math.max(2, Math.floor(room / 64)));
  return new Set(starts.filter((_n, i) => i % every === 0));
}

// Pageviews as bars, visitors as a line, and (compare) the previous period's pageviews as a dashed line; drawn at
// the panel's width in CSS pixels, so its text is as large on a phone as on a desktop.
function chart(pageviews, visitors, previous, width) {
  const height = 240, left = 44, right = 8, top = 12, bottom = 28, count = pageviews.keys.length;
  const step = pageviews.keys.length > 1 ? pageviews.keys[1] - pageviews.keys[0] : DAY_MS;
  const ticks = yTicks(Math.max(...[...pageviews.values, ...visitors.values, ...(previous ? previous.values : [])]
    .map(plotted)));
  const highest = ticks[ticks.length - 1];
  const slot = (width - left - right) / Math.max(1, count);
  const y = (value) => top + (height - top - bottom) * (1 - value / highest);
  const svg = el("svg:svg", {viewBox: `0 0 ${width} ${height}`, width, height, role: "img", id: "chart",
    "aria-label": "pageviews (bars) and visitors (line) over the period"});
  for (const tick of ticks) {
    svg.append(el("svg:line", {x1: left, x2: width - right, y1: y(tick), y2: y(tick), class: tick ? "grid" : "axis"}));
    svg.append(el("svg:text", {x: left - 6, y: y(tick) + 4, class: "label y"}, String(tick)));
  }
  const shown = labelled(pageviews.keys, step, width - left - right);
  const years = new Set(pageviews.keys.map((key) => new Date(key).getUTCFullYear())).size > 1;
  let lastYear = null;
  pageviews.keys.forEach((key, n) => {
    const value = plotted(pageviews.values[n]);
    const bar = el("svg:rect", {x: left + n * slot + 1, y: y(value), width: Math.max(1, slot - 2),
      height: y(0) - y(value), class: isHidden(pageviews.values[n]) ? "bar hidden" : "bar"});
    const before = previous && n < previous.keys.length ? `; previous period ${previous.values[n]} pageviews` : "";
    const tip = `${bucketName(key, step)}: ${pageviews.values[n]} pageviews, ${visitors.values[n]} visitors${before}`;
    bar.append(el("svg:title", {}, tip));
    svg.append(bar);
    if (shown.has(n)) {
      const year = new Date(key).getUTCFullYear();
      svg.append(el("svg:text", {x: left + n * slot, y: height - 8, class: "label x"},
        axisName(key, step, years && year !== lastYear)));
      lastYear = year;
    }
  });
  const line = (values, name) => el("svg:polyline", {class: name,
    points: values.slice(0, count).map((value, n) => `${left + n * slot + slot / 2},${y(plotted(value))}`).join(" ")});
  if (previous) svg.append(line(previous.values, "previous"));
  svg.append(line(visitors.values, "line"));
  return svg;
}

function legend() {
  const item = (name, text) => el("li", {}, el("span", {class: `swatch ${name}`, "aria-hidden": "true"}), text);
  const toggle = el("input", {type: "checkbox", id: "compare"});
  toggle.checked = state.compare;
  toggle.addEventListener("change", () => { state.compare = toggle.checked; changed(); });
  return el("ul", {class: "legend"}, item("bar", "Pageviews"), item("line", "Visitors"),
    ...(state.compare ? [item("previous", "Pageviews, previous period")] : []),
    el("li", {class: "compare"}, el("label", {}, toggle, " Compare with the previous period")));
}

const cell = (value) => el("td", {}, value === null ? "-" : String(value));
const percent = (part, whole) => whole ? `${Math.round((1000 * part) / whole) / 10} %` : "-";

// A row's first cell: its text (a site's pages with their site beside them), cut with an ellipsis when long and
// whole in its title, on a bar of its share; a button that filters every panel by it when the panel has a filter
// (and picks the row's site, if it has one). A value with a comma cannot be one (the API reads commas as lists).
function keyCell(row, filter, share) {
  const shown = el("span", {class: "key", title: row.host ? `${row.host} ${row.text}` : row.text},
    ...(row.host && !state.site ? [el("span", {class: "host"}, row.host), " "] : []), row.text);
  const inner = [shown];
  if (share !== undefined) {
    const bar = el("span", {class: "share", "aria-hidden": "true"});
    bar.style.width = `${Math.min(100, Math.max(0, share * 100))}%`;
    inner.unshift(bar);
  }
  if (!filter.name || row.value === null || String(row.value).includes(",")) return el("td", {class: "keyed"}, ...inner);
  const button = el("button", {type: "button", class: "row-filter", "data-filter": filter.name}, ...inner);
  button.addEventListener("click", () => {
    state.filters[filter.name] = row.value;
    if (row.host) state.site = row.host;
    changed();
  });
  return el("td", {class: "keyed"}, button);
}

const PERCENTAGE = /^\d+(\.\d)? %$/; // what shownDetail makes of a rate: a number's cell, on one line

// A details value as a person reads it: a click-through rate, or any *_rate (a fraction), as a percentage.
const shownDetail = ([name, value]) => (name === "ctr" || name.endsWith("_rate")) && value !== null
  ? `${Math.round(value * 1000) / 10} %` : value;

// A panel: its rows from the answer's keys and values, or its details (every column), or `cells`; `total` (the
// period's pageviews or visits) makes each row's share, else the rows' own sum.
function table(title, data, columns, spec, options) {
  const {cells, total, empty} = options || {};
  const section = el("section", {class: "panel", "data-metric": data.metric || ""}, el("h2", {}, title));
  if (data.note) section.append(el("p", {class: "note"}, data.note)); // not stored per site: every site's numbers
  if (!data.keys.length) {
    section.append(el("p", {class: "empty"}, empty || "Nothing yet in this period."));
    return section;
  }
  const filter = panelFilter(spec);
  const first = data.details?.[0];
  const sitePages = Boolean(first && "site" in first && "path" in first);
  const lines = cells ? cells(data) : sitePages ? data.details.map((row) => [row.path, row.pageviews])
    : data.details ? data.details.map((row) => Object.entries(row).slice(0, columns.length).map(shownDetail))
    : data.keys.map((key, n) => [key, data.values[n]]);
  const shared = !cells && (!data.details || sitePages);
  const whole = (typeof total === "number" && total) // a hidden total: the rows' own sum
    || data.values.reduce((sum, value) => sum + (typeof value === "number" ? value : 0), 0);
  const rows = lines.map((values, n) => {
    const key = data.keys[n];
    const row = {text: String(values[0] ?? "-"), host: sitePages ? data.details[n].site : null,
      value: sitePages ? data.details[n].path : key === null ? null : filter.valueOf(String(key))};
    if (filter.name === "country" && key === "XX") row.text = "Unknown";
    const numbers = values.slice(1).map((value) => typeof value === "number" || isHidden(value)
      || PERCENTAGE.test(value) ? el("td", {class: "n"}, String(value)) : cell(value));
    if (shared) numbers.push(el("td", {class: "n share-text"}, percent(data.values[n], whole)));
    return el("tr", {}, keyCell(row, filter, shared ? data.values[n] / whole : undefined), ...numbers);
  });
  const head = el("tr", {}, ...columns.map((column) => el("th", {}, column)), ...(shared ? [el("th", {}, "%")] : []));
  section.append(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
  if (filter.name === "country" && data.keys.includes("XX")) {
    section.append(el("p", {class: "note hint"}, "Unknown: this server has no country database. Set geoip_db to a "
      + "MaxMind-format .mmdb file (and pip install maxminddb) to see countries."));
  }
  return section;
}

// A custom event picked (the `event` filter): its properties, values by count.
async function properties(name) {
  const data = await stat("custom-event-properties", {limit: 20});
  const section = table(`Properties of ${name}`, data, ["Property", "Value", "Count"], "",
    {cells: (answer) => answer.details.map((row) => [row.property, row.value, row.count])});
  section.id = "properties";
  return section;
}

// A card: its value, and its change against the previous period ("+12 %"; "lower" when less is better).
function number(label, value, id, now, before, lower) {
  const card = el("div", {class: "number"}, el("span", {class: "value", id}, String(value)),
    el("span", {class: "name"}, label));
  if (typeof now !== "number" || typeof before !== "number") return card; // none, or a hidden count: no change
  const change = before ? Math.round((100 * (now - before)) / before) : null;
  const text = change === null ? (now ? "new" : "0 %") : `${change > 0 ? "+" : ""}${change} %`;
  const better = change === null || change === 0 ? "same" : (change > 0) !== Boolean(lower) ? "up" : "down";
  card.append(el("span", {class: `change ${better}`, id: `${id}-change`,
    title: `${before} in the previous period of the same length`}, text));
  return card;
}

// A rate or average with its unit; null (hidden on a shared dashboard: of too few visits) as "-".
const shownWith = (value, unit) => value === null ? "-" : `${value} ${unit}`;

// The previous period: as long as this one, just before it, and cut where this one reaches now (today so far
// is compared with yesterday to the same hour). null when this one has not begun.
function previousWindow(overview, now) {
  const [from, to] = [Date.parse(overview.from), Date.parse(overview.to)];
  const elapsed = Math.min(to, now) - from;
  return elapsed > 0 ? {from: iso(from - (to - from)), to: iso(from - (to - from) + elapsed), whole: iso(from)} : null;
}

// Visitors in the last 30 minutes (any event), for the site and filters shown; refreshed without reloading.
const liveCount = () => getJSON("/api/v1/stats/live-count", {...state.filters, ...(state.site ? {site: state.site} : {})});

async function refreshLive() {
  const asked = location.search;
  try {
    const answer = await liveCount();
    const shown = $("#live-count");
    if (shown && asked === location.search) shown.textContent = String(answer.values[0]);
  } catch {
    // the next refresh tries again; a logout reloads the page (getJSON)
  }
}

// The render the page shows: a period or site picked while answers are on their way makes them stale.
let latest = 0;

async function render() {
  const ticket = ++latest;
  const main = $("#report");
  main.replaceChildren(el("p", {class: "loading"}, "Loading…"));
  try {
    const [overview, pageviews, visitors, live] = await Promise.all([stat("overview"), stat("pageviews"),
      stat("visitors"), liveCount()]);
    if (ticket !== latest) return;
    const earlier = previousWindow(overview, Date.parse(live.to));
    const [before, previous] = earlier ? await Promise.all([stat("overview", {from: earlier.from, to: earlier.to}),
      state.compare ? stat("pageviews", {from: earlier.from, to: earlier.whole}) : null]) : [null, null];
    if (ticket !== latest) return;
    const totals = {Pageviews: overview.values[1], Visits: overview.values[2]}; // the shares' whole
    const tops = await Promise.all(PANELS.map(async ([title, metric, columns, filter, empty]) =>
      table(title, {...await stat(metric, {limit: 10}), metric}, columns, filter, {total: totals[columns.at(-1)], empty})));
    if (state.filters.event) {
      const after = PANELS.findIndex((panel) => panel[3] === "event") + 1;
      tops.splice(after || tops.length, 0, await properties(state.filters.event));
    }
    if (ticket !== latest) return;
    const [now, then] = [overview.values, before ? before.values : []];
    const numbers = el("div", {class: "numbers"},
      number("Visitors", now[0], "visitors-total", now[0], then[0]),
      number("Pageviews", now[1], "pageviews-total", now[1], then[1]),
      number("Sessions", now[2], "sessions-total", now[2], then[2]),
      number("Bounce rate", shownWith(now[3], "%"), "bounce-rate", now[3], then[3], true),
      number("Visit duration", shownWith(now[4], "s"), "visit-duration", now[4], then[4]),
      number("Visitors in the last 30 minutes", live.values[0], "live-count"));
    numbers.lastChild.classList.add("live");
    const width = Math.max(280, Math.min(1168, main.clientWidth - 32) - 34); // the panel's inside, in CSS px
    main.replaceChildren(numbers, el("section", {class: "panel wide"}, chart(pageviews, visitors, previous, width),
      legend()));
    if (!SHARE && !overview.values[1] && !Object.keys(state.filters).length) {
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
  const host = decodeURIComponent(found[2]), hosts = excludedHosts();
  if (found[1] === "out") hosts[host] = true;
  else delete hosts[host];
  localStorage.setItem(EXCLUDED_KEY, JSON.stringify(hosts));
  const site = sites.find((candidate) => ofSite(host, candidate)); // back on the site whose link was followed
  history.replaceState(null, "", site ? `${location.pathname}?site=${encodeURIComponent(site)}` : location.pathname);
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
  if (!SHARE) { // a shared dashboard shows its one site, and no browser of its readers is excluded from it
    const sites = (await getJSON("/api/v1/sites")).sites;
    const picker = $("#site");
    const options = sites.map((site) => el("option", {value: site}, site));
    picker.replaceChildren(el("option", {value: ""}, "All sites"), ...options);
    picker.addEventListener("change", () => { state.site = picker.value; changed(); });
    rememberOptOut(sites); // before the URL is read: it may name the site to show
  }
  for (const button of document.querySelectorAll("[data-period]")) {
    button.addEventListener("click", () => {
      if (button.dataset.period !== "custom") {
        state.period = button.dataset.period;
        changed();
        return;
      }
      // The range is asked for first: the period changes when it is shown, nothing is highlighted before.
      $("#custom").hidden = false;
      $("#from").focus();
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
    state.period = "custom";
    state.from = from;
    state.to = nextDay(to); // the whole last day, to its last millisecond: `to` is exclusive
    changed();
  });
  window.addEventListener("popstate", () => { readURL(); showState(); render(); });
  readURL();
  showState();
  render();
  setInterval(refreshLive, 30000);
}

start();
