// metricanything app: the page. Talks to the JSON API of metricanything/app/server.py.
import * as THREE from 'three';
import { OrbitControls } from './vendor/three/OrbitControls.js';

const $ = (id) => document.getElementById(id);
const YAW = 20, PITCH = 25;  // degrees: the initial 3D view turns the capture viewpoint by these
const content = $('content');
const state = { file: null, example: null, result: null, depth: null, seq: 0, config: null };

// ------------------------------------------------------------------------------------------- helpers
function fmtDepth(z) {
  if (!Number.isFinite(z)) return 'no depth here';
  if (z < 10) return `${z.toFixed(3)} m`;
  if (z < 100) return `${z.toFixed(2)} m`;
  return `${z.toFixed(1)} m`;
}
const fmt1 = (x) => (Math.round(x * 10) / 10).toString();

function showError(message) {
  const el = $('error');
  el.textContent = message;
  el.hidden = false;
}
function hideError() { $('error').hidden = true; $('error').textContent = ''; }

function setBusy(on, text) {
  $('busy').hidden = !on;
  $('run').disabled = on;
  if (text) $('busy-text').textContent = text;
  if (on) content.dataset.state = 'busy';
}

async function fetchBuffer(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  return resp.arrayBuffer();
}

function loadImage(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new Error(`cannot load ${url}`));
    img.src = url;
  });
}

// ------------------------------------------------------------------------------------------- 3D view
class Viewer {
  constructor(el) {
    this.el = el;
    this.points = null;
    try {
      this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    } catch (err) {
      this.renderer = null;
      el.innerHTML = '<div class="msg">3D view unavailable: this browser has no WebGL. '
        + 'The PLY and GLB downloads still work.</div>';
      return;
    }
    // vertex colours are the image's sRGB bytes: show them as they are
    this.renderer.outputColorSpace = THREE.LinearSRGBColorSpace;
    this.renderer.setPixelRatio(window.devicePixelRatio || 1);
    this.renderer.setClearColor(0x12151c);
    el.appendChild(this.renderer.domElement);
    const help = document.createElement('div');
    help.className = 'help';
    help.textContent = 'drag: orbit · right-drag: pan · wheel: zoom';
    el.appendChild(help);
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(50, 1, 0.01, 1000);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.addEventListener('change', () => this.render());
    new ResizeObserver(() => this.resize()).observe(el);
  }

  resize() {
    if (!this.renderer) return;
    const w = this.el.clientWidth, h = this.el.clientHeight;
    if (!w || !h) return;
    this.renderer.setSize(w, h);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  render() { if (this.renderer) this.renderer.render(this.scene, this.camera); }

  setCloud(buffer, meta) {
    if (!this.renderer) return;
    const n = new DataView(buffer).getUint32(0, true);
    const cv = new Float32Array(buffer, 8, n * 3);
    const colors = new Uint8Array(buffer, 8 + 12 * n, n * 3);
    const gl = new Float32Array(n * 3);  // OpenCV (y down, z forward) -> three.js (y up, z backward)
    for (let i = 0; i < n; i++) {
      gl[3 * i] = cv[3 * i]; gl[3 * i + 1] = -cv[3 * i + 1]; gl[3 * i + 2] = -cv[3 * i + 2];
    }
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute('position', new THREE.BufferAttribute(gl, 3));
    geometry.setAttribute('color', new THREE.Uint8BufferAttribute(colors, 3, true));
    if (this.points) { this.scene.remove(this.points); this.points.geometry.dispose(); this.points.material.dispose(); }
    this.points = new THREE.Points(geometry, new THREE.PointsMaterial({
      size: Number($('point-size').value), sizeAttenuation: false, vertexColors: true }));
    this.scene.add(this.points);
    this.bounds = robustBounds(gl, n);
    const zmax = meta.depth.max_m || 10;
    this.camera.fov = meta.intrinsics.fov_y_deg;
    this.camera.near = Math.max(1e-3, (meta.depth.min_m || 0.1) / 20);
    this.camera.far = zmax * 20;
    this.camera.updateProjectionMatrix();
    this.view('orbit');
  }

  setPointSize(px) { if (this.points) { this.points.material.size = px; this.render(); } }

  view(kind) {
    if (!this.points) return;
    const { center, radius } = this.bounds;
    if (kind === 'camera') {  // where the photo was taken, looking along the optical axis
      this.camera.position.set(0, 0, 0);
      this.controls.target.set(0, 0, center.z);
    } else {  // the capture viewpoint turned about the scene's middle and pulled back: the depth shows
      const distance = 1.35 * Math.max(center.length(), radius);
      const dir = center.clone().negate().normalize().applyAxisAngle(new THREE.Vector3(0, 1, 0), THREE.MathUtils.degToRad(YAW));
      dir.applyAxisAngle(new THREE.Vector3(1, 0, 0).applyAxisAngle(new THREE.Vector3(0, 1, 0), THREE.MathUtils.degToRad(YAW)), THREE.MathUtils.degToRad(-PITCH));
      this.camera.position.copy(center).addScaledVector(dir, distance);
      this.controls.target.copy(center);
    }
    this.controls.update();
    this.render();
  }
}

// the centre and radius of the box between the 5th and 95th percentiles of each coordinate
function robustBounds(xyz, n) {
  const step = Math.max(1, Math.floor(n / 20000));
  const axes = [[], [], []];
  for (let i = 0; i < n; i += step) for (let k = 0; k < 3; k++) axes[k].push(xyz[3 * i + k]);
  const lo = [], hi = [];
  for (const a of axes) {
    a.sort((p, q) => p - q);
    lo.push(a.length ? a[Math.floor(0.05 * (a.length - 1))] : -1);
    hi.push(a.length ? a[Math.ceil(0.95 * (a.length - 1))] : 1);
  }
  const center = new THREE.Vector3((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2);
  const radius = Math.max(1e-3, 0.5 * Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]));
  return { center, radius };
}

// ------------------------------------------------------------------------------------------- result
function sizeImages(r) {
  const W = r.width, H = r.height;
  const card = $('depth-box').closest('.card');
  const avail = card.clientWidth - 24 - $('colorbar').offsetWidth - 10;
  const scale = Math.max(0.05, Math.min(avail / W, 420 / H));
  for (const img of [$('rgb'), $('depth')]) {
    img.style.width = `${Math.floor(W * scale)}px`;
    img.style.height = `${Math.floor(H * scale)}px`;
    img.classList.toggle('pixelated', scale >= 2);
  }
}

function drawColorbar(cb) {
  const el = $('colorbar');
  el.innerHTML = '';
  const title = document.createElement('div');
  title.className = 'title';
  title.textContent = 'depth (m)';
  const body = document.createElement('div');
  body.className = 'body';
  const grad = document.createElement('div');
  grad.className = 'grad';
  grad.style.background = `linear-gradient(to top, ${cb.stops.join(', ')})`;
  const labels = document.createElement('div');
  labels.className = 'labels';
  for (const t of cb.ticks) {
    const s = document.createElement('span');
    s.textContent = t.label;
    s.style.bottom = `${(t.pos * 100).toFixed(2)}%`;
    s.dataset.value = t.value;
    labels.appendChild(s);
  }
  body.append(grad, labels);
  const note = document.createElement('div');
  note.className = 'note';
  note.textContent = 'log scale, 1–99 %';
  el.append(title, body, note);
}

const DOWNLOAD_LABELS = [
  ['depth.npy', 'depth.npy', 'float32 metres'],
  ['depth.png', 'depth.png', '16-bit mm'],
  ['cloud.ply', 'cloud.ply', 'point cloud'],
  ['cloud.glb', 'cloud.glb', 'glTF'],
  ['depth_vis.png', 'depth_vis.png', 'figure'],
  ['intrinsics.json', 'intrinsics.json', 'camera'],
];

function fillSummary(r) {
  const K = r.intrinsics;
  $('intrinsics-text').textContent = `fx ${fmt1(K.fx)} · fy ${fmt1(K.fy)} · cx ${fmt1(K.cx)} · cy ${fmt1(K.cy)} px · `
    + `hFoV ${fmt1(K.fov_x_deg)}°`;
  const badge = $('intrinsics-source');
  badge.textContent = r.intrinsics_source;
  badge.className = `badge src-${r.intrinsics_source}`;
  $('intrinsics-origin').textContent = r.intrinsics_origin;
  let model = `${r.model.label} (${r.model.kind})`;
  if (r.prompt) model += ` · prompt: ${r.prompt.points.toLocaleString('en-US')} ${r.prompt.kind === 'lidar' ? 'LiDAR points' : 'points'} from ${r.prompt.file}`;
  else model += ' · no prompt';
  $('model-text').textContent = model;
  const d = r.depth;
  $('depth-text').textContent = d.min_m === null ? 'no valid depth'
    : `${fmtDepth(d.min_m)} – ${fmtDepth(d.max_m)} (median ${fmtDepth(d.median_m)}), ${(100 * d.valid_fraction).toFixed(1)} % valid`;
  $('time-text').textContent = `${r.timing_s.inference.toFixed(2)} s inference, ${r.timing_s.total.toFixed(2)} s in all · ${r.width}×${r.height}`;
  const warnings = $('warnings');
  warnings.innerHTML = '';
  for (const w of r.warnings) {
    const li = document.createElement('li');
    li.textContent = w;
    warnings.appendChild(li);
  }
  const fb = $('fallback');
  if (r.intrinsics_source === 'fallback') {
    fb.textContent = `⚠ Focal length unknown: assumed fx = ${fmt1(K.fx)} px (${fmt1(K.fov_x_deg)}° horizontal FoV). `
      + 'The metric scale and the 3D shape depend on this guess: enter fx or the FoV, or add an intrinsics JSON.';
    fb.hidden = false;
  } else {
    fb.hidden = true;
  }
  const dl = $('downloads');
  dl.innerHTML = '';
  const stem = r.name.replace(/\.[^.]*$/, '') || 'image';
  for (const [name, label, what] of DOWNLOAD_LABELS) {
    const unavailable = r.downloads[name];
    const a = document.createElement('a');
    a.id = `dl-${name.replace('.', '-')}`;
    if (unavailable) { a.title = unavailable; a.style.opacity = 0.5; } else { a.href = r.urls[name]; a.download = `${stem}_${name}`; }
    let extra = what;
    if (name === 'depth.png' && d.png_scale_m && d.png_scale_m !== 0.001) extra = `16-bit, ${d.png_scale_m * 1000} mm units`;
    a.innerHTML = `${label} <small></small>`;
    a.querySelector('small').textContent = extra;
    dl.appendChild(a);
  }
}

async function showResult(r) {
  state.result = r;
  state.depth = null;
  $('empty').hidden = true;
  $('summary').hidden = false;
  $('views').hidden = false;
  $('name-text').textContent = r.name;
  fillSummary(r);
  drawColorbar(r.colorbar);
  sizeImages(r);
  for (const c of document.querySelectorAll('.cross')) c.hidden = true;
  $('readout-uv').textContent = 'hover the image';
  $('readout-z').textContent = '';
  const [depthBuf, cloudBuf] = await Promise.all([
    fetchBuffer(r.urls['depth.f32']),
    fetchBuffer(r.urls['cloud_preview.bin']),
    loadImage($('rgb'), r.urls['image.png']),
    loadImage($('depth'), r.urls['color.png']),
  ]);
  if (state.result !== r) return;
  state.depth = new Float32Array(depthBuf);
  const c = r.cloud;
  $('cloud-info').textContent = `${c.points.toLocaleString('en-US')} points, edge-filtered`
    + (c.preview_step > 1 ? ` (showing every ${c.preview_step}th)` : '');
  $('cloud-info').dataset.points = c.points;
  // about one image pixel per point in the camera view (a little more, so neighbours touch)
  const spacing = Math.sqrt(r.cloud.preview_step);  // the preview keeps every step-th point
  const size = Math.min(8, Math.max(1, Math.ceil((2 * 1.15 * spacing * viewer.el.clientHeight) / r.height) / 2));
  $('point-size').value = size;
  viewer.setCloud(cloudBuf, r);
  content.dataset.state = 'ready';
  content.dataset.ready = r.id;
}

function onHover(ev) {
  const r = state.result;
  if (!r || !state.depth) return;
  const rect = ev.currentTarget.getBoundingClientRect();
  const u = Math.min(r.width - 1, Math.max(0, Math.floor(((ev.clientX - rect.left) / rect.width) * r.width)));
  const v = Math.min(r.height - 1, Math.max(0, Math.floor(((ev.clientY - rect.top) / rect.height) * r.height)));
  const z = state.depth[v * r.width + u];
  $('readout-uv').textContent = `u ${u}, v ${v}:`;
  $('readout-z').textContent = fmtDepth(z);
  for (const box of [$('rgb-box'), $('depth-box')]) {
    const cross = box.querySelector('.cross');
    cross.style.left = `${((u + 0.5) / r.width) * 100}%`;
    cross.style.top = `${((v + 0.5) / r.height) * 100}%`;
    cross.hidden = false;
  }
}

// ------------------------------------------------------------------------------------------- requests
async function run() {
  if (!state.file && !state.example) {
    showError('Choose an image first: drop one, pick a file or click an example.');
    return;
  }
  const fd = new FormData();
  if (state.file) fd.append('image', state.file, state.file.name);
  else fd.append('example', state.example);
  for (const [id, field] of [['intrinsics-input', 'intrinsics'], ['prompt-input', 'prompt'], ['calib-input', 'lidar_calib']]) {
    const f = $(id).files[0];
    if (f) fd.append(field, f, f.name);
  }
  if ($('fx').value) fd.append('fx', $('fx').value);
  if ($('fov').value) fd.append('fov_x', $('fov').value);
  fd.append('model', $('model').value);
  if ($('model').value === 'custom') fd.append('model_path', $('model-path').value);
  const seq = ++state.seq;
  setBusy(true, state.result ? 'Computing depth…' : 'Computing depth… (the first run also loads the model)');
  let ok = false, body;
  try {
    const resp = await fetch('api/infer', { method: 'POST', body: fd });
    ok = resp.ok;
    body = await resp.json().catch(() => ({ detail: `the server answered HTTP ${resp.status} ${resp.statusText}` }));
  } catch (err) {
    body = { detail: `the server did not answer (${err.message}); is "metricanything app" still running?` };
  }
  if (seq !== state.seq) return;
  setBusy(false);
  if (!ok) {
    const detail = typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail);
    showError(detail);
    content.dataset.state = 'error';
    return;
  }
  hideError();
  try {
    await showResult(body);
  } catch (err) {
    showError(`could not show the result: ${err.message}`);
    content.dataset.state = 'error';
  }
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  state.example = null;
  $('image-name').textContent = file.name;
  for (const b of document.querySelectorAll('.examples button')) b.classList.remove('active');
  run();
}

function chooseExample(ex, button) {
  state.example = ex.id;
  state.file = null;
  $('image-input').value = '';
  $('image-name').textContent = '';
  for (const b of document.querySelectorAll('.examples button')) b.classList.toggle('active', b === button);
  run();
}

// ------------------------------------------------------------------------------------------- wiring
const viewer = new Viewer($('viewer'));

async function init() {
  let cfg;
  try {
    cfg = await (await fetch('api/config')).json();
  } catch (err) {
    showError(`cannot reach the server (${err.message})`);
    return;
  }
  state.config = cfg;
  $('server-info').textContent = `metricanything ${cfg.version} · ${cfg.device} ${cfg.precision} · three.js ${cfg.three_version}`;
  $('limits').textContent = `Limits: ${cfg.limits.max_image_mb} MB and ${cfg.limits.max_megapixels} MP per image; `
    + `the last ${cfg.store_size} results are kept.`;
  const box = $('examples');
  for (const ex of cfg.examples) {
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.example = ex.id;
    b.title = ex.title;
    const img = document.createElement('img');
    img.src = ex.url;
    img.alt = ex.title;
    const span = document.createElement('span');
    span.textContent = ex.title;
    b.append(img, span);
    b.addEventListener('click', () => chooseExample(ex, b));
    box.appendChild(b);
  }
  if (cfg.default_model === 'custom') {
    $('model').value = 'custom';
    $('model-path').value = cfg.default_model_path;
    $('model-path').hidden = false;
  }
  if (!cfg.allow_model_paths) $('model-path').readOnly = true;
  content.dataset.state = 'idle';
}

$('image-input').addEventListener('change', (ev) => chooseFile(ev.target.files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
document.addEventListener('dragover', (ev) => ev.preventDefault());
document.addEventListener('drop', (ev) => {
  ev.preventDefault();
  drop.classList.remove('over');
  if (ev.dataTransfer && ev.dataTransfer.files.length) chooseFile(ev.dataTransfer.files[0]);
});
$('run').addEventListener('click', run);
$('model').addEventListener('change', () => { $('model-path').hidden = $('model').value !== 'custom'; });
$('fx').addEventListener('input', () => { if ($('fx').value) $('fov').value = ''; });
$('fov').addEventListener('input', () => { if ($('fov').value) $('fx').value = ''; });
for (const b of document.querySelectorAll('.clear')) b.addEventListener('click', () => { $(b.dataset.for).value = ''; });
for (const img of [$('rgb'), $('depth')]) img.addEventListener('mousemove', onHover);
$('point-size').addEventListener('input', (ev) => viewer.setPointSize(Number(ev.target.value)));
$('view-camera').addEventListener('click', () => viewer.view('camera'));
$('view-orbit').addEventListener('click', () => viewer.view('orbit'));
window.addEventListener('resize', () => { if (state.result) sizeImages(state.result); });
init();
