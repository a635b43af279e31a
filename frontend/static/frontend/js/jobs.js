/* The one watcher for every job a page shows: a dataset's ingest, merge or preprocessing, a table
   of measures. It polls the job's JSON every second until the job is finished, and keeps the status
   badge, the message, the progress bar and the Stop button up to date (`jobView`, which a page
   whose job is pushed to it, the training run's, uses on its own).

   Every job's JSON carries the same fields (backend/core/jobs.py): `status` in the kind's own
   words, `finished`, `stop_requested`, `progress`, `progress_done` / `progress_total`,
   `progress_message`, `eta_seconds` and `message`. */
import { api, ApiError } from "./api.js";
import { formatSeconds, setProgress } from "./dom.js";

const POLL_MS = 1000;

export function isFinished(job) {
  return job.finished === true;
}

/* url: the job's API address; its Stop is POST `${url}stop/`.
   view: the page's elements, each optional: { status, message, progress, eta, stop }.
     progress: a .progress bar, shown while the job is unfinished;
     eta: a line of its own for the time left (without one, the time left ends the bar's label).
   onUpdate(job): after each poll, before the view changes (awaited, so a page can fetch more first).
   onFinish(job): once, when the job has finished; polling ends there. */
export function watchJob(url, { view = {}, onUpdate = () => {}, onFinish = () => {} } = {}) {
  const showJob = jobView(url, view);
  const tick = async () => {
    let job;
    try {
      job = await api("GET", url);
      // The page's own data first: when the badge says "finished", what the page shows is complete too.
      await onUpdate(job);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      // A server restarting or a lost connection: keep watching, the next poll may work.
      console.warn(`Watching ${url}: ${error.message}`);
      setTimeout(tick, POLL_MS);
      return;
    }
    if (showJob(job)) await onFinish(job);
    else setTimeout(tick, POLL_MS);
  };
  tick();
}

/* The page's view of a job (url and view as for watchJob): returns show(job), which brings the view
   up to date with the job's JSON and returns whether the job has finished. */
export function jobView(url, view = {}) {
  const secondsLeft = etaEstimator();
  const stop = view.stop ? stopButton(view.stop, `${url}stop/`) : { accepted: false };
  return (job) => {
    const finished = isFinished(job);
    const stopping = !finished && (stop.accepted || Boolean(job.stop_requested));
    show(view, job, { finished, stopping, secondsLeft: secondsLeft(job) });
    return finished;
  };
}

/* Stop asks the server; the job itself says when it has stopped. An accepted click shows
   "Stopping…" at once, before the next poll brings `stop_requested`. */
function stopButton(button, stopUrl) {
  const state = { accepted: false };
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api("POST", stopUrl);
      state.accepted = true;
    } catch (error) {
      button.disabled = false;
      alert(error.message);
    }
  });
  return state;
}

function show(view, job, { finished, stopping, secondsLeft }) {
  const left = finished || stopping || secondsLeft === null ? "" : `${formatSeconds(secondsLeft)} left`;
  if (view.status) showStatus(view.status, stopping ? "stopping" : job.status, stopping ? "Stopping…" : null);
  if (view.message) view.message.textContent = job.message || "";
  if (view.stop) view.stop.hidden = finished || stopping;
  if (view.eta) view.eta.textContent = left;
  if (!view.progress) return;
  if (finished) {
    view.progress.hidden = true;
    return;
  }
  const fraction = job.progress ?? (job.progress_total ? job.progress_done / job.progress_total : 0);
  const what = job.status === "queued" ? "Waiting for a worker" : stepCounts(job);
  const label = [`${Math.round(fraction * 100)}%`, what, job.progress_message, view.eta ? "" : left];
  setProgress(view.progress, fraction, label.filter(Boolean).join(" · "));
}

function stepCounts(job) {
  return job.progress_total ? `${job.progress_done} of ${job.progress_total} steps` : "";
}

function showStatus(badge, status, text) {
  badge.className = `status status-${status}`;
  badge.textContent = text || status.charAt(0).toUpperCase() + status.slice(1);
}

/* Seconds left: the server's estimate (`eta_seconds`) when it has one; while it cannot tell (the
   job's start is not known to it), measured here from the steps done since the job was first seen. */
function etaEstimator() {
  let firstSeen = null;
  return (job) => {
    if (job.eta_seconds !== null && job.eta_seconds !== undefined) return job.eta_seconds;
    if (job.status === "queued" || isFinished(job) || !job.progress_total) return null;
    const now = Date.now();
    if (firstSeen === null) firstSeen = { time: now, done: job.progress_done };
    const rate = (job.progress_done - firstSeen.done) / ((now - firstSeen.time) / 1000);
    return rate > 0 ? (job.progress_total - job.progress_done) / rate : null;
  };
}
