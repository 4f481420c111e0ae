// A line chart drawn by hand on a canvas (no chart library): one series of {at, value}, oldest first.

const PAD = { left: 10, right: 10, top: 20, bottom: 20 };

function clock(ms, seconds) {
  const parts = seconds ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
  return new Date(ms).toLocaleTimeString([], parts);
}

/** Draw `points` on `canvas`, sized to its CSS box at the screen's pixel ratio; `format` labels values. */
export function drawSeries(canvas, points, format = String) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const style = getComputedStyle(canvas);
  const line = style.getPropertyValue("--line").trim() || "#a78bfa";
  const grid = style.getPropertyValue("--grid").trim() || "#2a2f3a";
  ctx.font = `11px ${style.fontFamily}`;
  ctx.fillStyle = style.color;
  if (points.length === 0) {
    ctx.fillText("no snapshots yet", PAD.left, height / 2);
    return;
  }
  const xs = points.map((p) => p.at);
  const ys = points.map((p) => p.value);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - Math.max(1, Math.abs(y0) * 0.05), y1 + Math.max(1, Math.abs(y1) * 0.05)];
  const w = width - PAD.left - PAD.right;
  const h = height - PAD.top - PAD.bottom;
  const x = (v) => PAD.left + ((v - x0) / (x1 - x0)) * w;
  const y = (v) => PAD.top + h - ((v - y0) / (y1 - y0)) * h;

  ctx.strokeStyle = grid;
  ctx.lineWidth = 1;
  for (let i = 0; i <= 3; i++) {
    const gy = Math.round(PAD.top + (h * i) / 3) + 0.5;
    ctx.beginPath();
    ctx.moveTo(PAD.left, gy);
    ctx.lineTo(PAD.left + w, gy);
    ctx.stroke();
  }

  const path = new Path2D();
  points.forEach((p, i) => (i ? path.lineTo(x(p.at), y(p.value)) : path.moveTo(x(p.at), y(p.value))));
  if (points.length > 1) {
    const area = new Path2D(path);
    area.lineTo(x(xs.at(-1)), PAD.top + h);
    area.lineTo(x(xs[0]), PAD.top + h);
    area.closePath();
    const fill = ctx.createLinearGradient(0, PAD.top, 0, PAD.top + h);
    fill.addColorStop(0, `${line}55`);
    fill.addColorStop(1, `${line}00`);
    ctx.fillStyle = fill;
    ctx.fill(area);
  }
  ctx.strokeStyle = line;
  ctx.lineWidth = 2;
  ctx.lineJoin = "round";
  ctx.stroke(path);
  const last = points.at(-1);
  ctx.fillStyle = line;
  ctx.beginPath();
  ctx.arc(x(last.at), y(last.value), 3, 0, 2 * Math.PI);
  ctx.fill();

  ctx.fillStyle = style.color;
  ctx.textBaseline = "bottom";
  ctx.fillText(format(y1), PAD.left, PAD.top - 4);
  ctx.textBaseline = "top";
  ctx.fillText(format(y0), PAD.left, PAD.top + h + 4);
  ctx.textAlign = "right";
  const seconds = xs.at(-1) - xs[0] < 3600_000; // a short series is told to the second
  const span = points.length > 1 ? `${clock(xs[0], seconds)} – ${clock(xs.at(-1), seconds)}` : clock(xs[0], true);
  ctx.fillText(span, PAD.left + w, PAD.top + h + 4);
}
