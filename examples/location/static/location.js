// The location page: watch one area and draw its walkers, through the lexicons client
// that the server serves at /lexicons.js. Run `python examples/location/simulate.py` for
// walkers; `?lat=...&lon=...` in the URL picks the point to watch.
import { Client } from "/lexicons.js";

const $ = (id) => document.getElementById(id);
const CELL = 0.01; // degrees per area side, as in app.py
const query = new URLSearchParams(location.search);
$("lat").value = query.get("lat") ?? "48.855";
$("lon").value = query.get("lon") ?? "2.355";

let area = null; // the watched area's channel name
const walkers = new Map(); // id -> {lat, lon}

const scheme = location.protocol === "https:" ? "wss" : "ws";
const client = new Client(`${scheme}://${location.host}/`);

// The server subscribes a watcher to the area in `watch`; a new connection starts with no
// subscriptions, so the page watches again each time the client (re)connects.
client.onState((state) => {
  if (state === "open") watch();
  else if (state === "waiting") $("status").textContent = "Connection lost, reconnecting…";
});

async function watch() {
  const point = { lat: Number($("lat").value), lon: Number($("lon").value) };
  try {
    const watching = await client.call("watch", point);
    if (area !== null && area !== watching.area) client.send("unwatch", { area });
    area = watching.area;
    $("area").textContent = area;
    $("status").textContent = "";
    replace(watching.positions);
  } catch (error) {
    $("status").textContent = error.message; // out of range, or the connection dropped
  }
}

client.on("move", (walker) => {
  if (walker.area === area) walkers.set(walker.id, walker);
  else walkers.delete(walker.id); // it left our area
  draw();
});
client.on("gone", (walker) => walkers.delete(walker.id) && draw());
// Once a second the server sends what is there now: anything missed is made up for.
client.on("snapshot", (snapshot) => snapshot.area === area && replace(snapshot.positions));

function replace(positions) {
  walkers.clear();
  for (const walker of positions) walkers.set(walker.id, walker);
  draw();
}

function draw() {
  if (area === null) return;
  const [, row, column] = area.split(":").map(Number);
  const dots = [];
  const items = [];
  for (const [id, walker] of [...walkers].sort(([a], [b]) => a.localeCompare(b))) {
    const dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    dot.setAttribute("cx", String(((walker.lon / CELL - column) * 100).toFixed(2)));
    dot.setAttribute("cy", String((100 - (walker.lat / CELL - row) * 100).toFixed(2)));
    dot.setAttribute("r", "1.8");
    dots.push(dot);
    const item = document.createElement("li");
    item.className = "marker";
    item.dataset.id = id;
    item.textContent = `${walker.lat.toFixed(5)}, ${walker.lon.toFixed(5)}`;
    items.push(item);
  }
  $("map").replaceChildren(...dots);
  $("walkers").replaceChildren(...items);
  $("count").textContent = String(walkers.size);
}

$("where").addEventListener("submit", (event) => {
  event.preventDefault();
  watch();
});
