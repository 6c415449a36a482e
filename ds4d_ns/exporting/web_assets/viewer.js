// Player of a ds4d-export --web clip. The frames are whole Gaussian splats (frames/*.spz): every
// frame is loaded once as its own Spark SplatMesh and playback only switches which one is visible,
// so a frame change costs no decoding, only Spark's re-sort of the visible splats.
//
// window.ds4d is the page's interface for scripts and tests: ready (a promise), state fields, the
// camera as the renderer uses it, setTime / play / pause, and afterFrames(n).

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { SparkRenderer, SplatMesh } from "@sparkjsdev/spark";

const params = new URLSearchParams(window.location.search);
const elements = {
  view: document.getElementById("view"),
  status: document.getElementById("status"),
  play: document.getElementById("play"),
  time: document.getElementById("time"),
  label: document.getElementById("label"),
};

const frameWaiters = [];
const api = {
  loaded: false,
  error: null,
  manifest: null,
  frameIndex: 0,
  time: 0,
  playing: false,
  framesDrawn: 0,
  drawFps: 0,
  camera: () => null,
  setTime: () => {},
  play: () => {},
  pause: () => {},
  // resolves once n more frames have been drawn: the renderer has caught up with a change
  afterFrames: (n) => new Promise((resolve) => frameWaiters.push({ at: api.framesDrawn + n, resolve })),
};
window.ds4d = api;
api.ready = main().catch((error) => {
  api.error = String(error && error.stack ? error.stack : error);
  elements.status.textContent = `could not play this clip: ${error}`;
  console.error(error);
  throw error;
});

async function main() {
  if (params.get("ui") === "0") document.body.classList.add("hide-ui");
  const response = await fetch("manifest.json");
  if (!response.ok) throw new Error(`manifest.json: HTTP ${response.status}`);
  const manifest = await response.json();
  api.manifest = manifest;
  const frames = manifest.frames;
  if (!frames.length) throw new Error("manifest.json lists no frames");

  const renderer = new THREE.WebGLRenderer({ antialias: false });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setClearColor(new THREE.Color(background(manifest)), 1);
  elements.view.appendChild(renderer.domElement);
  const scene = new THREE.Scene();
  // 0.3 px^2 of blur added to every projected splat, without opacity compensation: how the model was
  // rendered in training (gsplat's "classic" mode), so the page shows what was fitted
  scene.add(new SparkRenderer({ renderer, preBlurAmount: 0.3, blurAmount: 0 }));

  const camera = makeCamera(manifest.camera);
  const controls = new OrbitControls(camera, renderer.domElement);
  controls.target.fromArray(manifest.camera.target);
  controls.update();

  const resize = () => {
    const width = Math.max(1, elements.view.clientWidth);
    const height = Math.max(1, elements.view.clientHeight);
    renderer.setSize(width, height, false);
    camera.aspect = width / height;
    camera.updateProjectionMatrix();
  };
  window.addEventListener("resize", resize);
  resize();

  let loadedCount = 0;
  const meshes = frames.map((frame) => {
    const mesh = new SplatMesh({ url: frame.file });
    mesh.visible = false;
    mesh.initialized.then(() => {
      loadedCount += 1;
      elements.status.textContent = `loading ${loadedCount} / ${frames.length} frames`;
    });
    return mesh;
  });
  await Promise.all(meshes.map((mesh) => mesh.initialized));
  for (const mesh of meshes) scene.add(mesh);

  // playback follows the clip's clock: frame i is shown from frames[i].seconds on; after the last frame
  // one interval of the clip's frame rate passes, then it loops
  const loopSeconds = manifest.duration_s + 1 / manifest.fps;
  const frameAt = (seconds) => {
    const inLoop = ((seconds % loopSeconds) + loopSeconds) % loopSeconds;
    let index = 0;
    while (index + 1 < frames.length && frames[index + 1].seconds <= inLoop) index += 1;
    return index;
  };
  let shown = -1;
  let playStart = 0; // performance.now() at which frame 0 was (or would have been) shown in this play
  const show = (index) => {
    if (index === shown) return;
    if (shown >= 0) meshes[shown].visible = false;
    meshes[index].visible = true;
    shown = index;
    api.frameIndex = index;
    api.time = frames[index].time;
    elements.time.value = String(index);
    elements.label.textContent =
      `t = ${frames[index].time.toFixed(3)}  frame ${index + 1} / ${frames.length}`;
  };
  const play = () => {
    if (frames.length < 2) return;
    api.playing = true;
    playStart = performance.now() - frames[shown].seconds * 1000;
    elements.play.textContent = "Pause";
  };
  const pause = () => {
    api.playing = false;
    elements.play.textContent = "Play";
  };
  api.play = play;
  api.pause = pause;
  api.setTime = (time) => {
    pause();
    show(nearestFrame(frames, Number(time)));
  };
  api.camera = () => ({
    // column-major 4x4, camera to world, OpenGL axes (the camera looks down its -z)
    matrixWorld: Array.from(camera.matrixWorld.elements),
    fovYDeg: camera.fov,
    aspect: camera.aspect,
    near: camera.near,
    far: camera.far,
    width: renderer.domElement.width,
    height: renderer.domElement.height,
  });

  elements.time.max = String(frames.length - 1);
  elements.time.disabled = false;
  elements.play.disabled = frames.length < 2;
  elements.time.addEventListener("input", () => {
    pause();
    show(Number(elements.time.value));
  });
  elements.play.addEventListener("click", () => (api.playing ? pause() : play()));
  window.addEventListener("keydown", (event) => {
    if (event.code === "Space" && event.target === document.body) {
      event.preventDefault();
      api.playing ? pause() : play();
    }
  });

  const start = params.get("t");
  if (start !== null && start !== "" && Number.isFinite(Number(start))) {
    api.setTime(Number(start)); // a link to a moment opens paused there
  } else {
    show(0);
    play();
  }

  let fpsWindowStart = performance.now();
  let fpsWindowFrames = 0;
  renderer.setAnimationLoop((now) => {
    if (api.playing) show(frameAt((now - playStart) / 1000));
    controls.update();
    renderer.render(scene, camera);
    api.framesDrawn += 1;
    fpsWindowFrames += 1;
    if (now - fpsWindowStart >= 1000) {
      api.drawFps = (fpsWindowFrames * 1000) / (now - fpsWindowStart);
      fpsWindowStart = now;
      fpsWindowFrames = 0;
    }
    for (let i = frameWaiters.length - 1; i >= 0; i -= 1) {
      if (api.framesDrawn >= frameWaiters[i].at) frameWaiters.splice(i, 1)[0].resolve(api.framesDrawn);
    }
  });
  elements.status.textContent = "";
  api.loaded = true;
  return api;
}

function background(manifest) {
  const given = params.get("bg");
  if (given && /^[0-9a-fA-F]{6}$/.test(given)) return `#${given}`;
  return manifest.background || "#ffffff";
}

function makeCamera(spec) {
  // the export's camera: the dataset's input camera, so the page opens on the view of the video
  const camera = new THREE.PerspectiveCamera(spec.fov_y_deg, 1, spec.near, spec.far);
  camera.up.fromArray(spec.up); // orbit about the scene's up axis
  const pose = new THREE.Matrix4().set(...spec.camera_to_world.flat());
  pose.decompose(camera.position, camera.quaternion, new THREE.Vector3());
  camera.updateMatrixWorld();
  return camera;
}

function nearestFrame(frames, time) {
  let best = 0;
  for (let i = 1; i < frames.length; i += 1) {
    if (Math.abs(frames[i].time - time) < Math.abs(frames[best].time - time)) best = i;
  }
  return best;
}
