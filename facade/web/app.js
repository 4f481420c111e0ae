// The page: wires the chat, the wallet, credits, network stats, the treasury chart, staking and images
// to the network API. Everything it shows comes from the documented /api/ routes.

import { get, post, withQuery } from "./api.js";
import { drawSeries } from "./chart.js";
import { Chat } from "./chat.js";
import { signIn, signOut, whoAmI } from "./wallet.js";

const STATS_EVERY_MS = 3000;
const TREASURY_EVERY_MS = 30000;

const $ = (id) => document.getElementById(id);
const grouped = new Intl.NumberFormat("en");
const decimal = new Intl.NumberFormat("en", { maximumFractionDigits: 4 });
const fmt = (n) => (Number.isInteger(n) ? grouped.format(n) : decimal.format(n));

let signedIn = false;
let treasury = null;

async function refreshAccount() {
  const me = await whoAmI();
  signedIn = me !== null;
  $("who").hidden = !signedIn;
  $("who").textContent = signedIn ? `${me.user.address.slice(0, 4)}…${me.user.address.slice(-4)}` : "";
  $("who").title = signedIn ? me.user.address : "";
  $("sign-in").hidden = signedIn;
  $("sign-out").hidden = !signedIn;
  $("credits").textContent = signedIn ? fmt(me.credits) : "–";
  $("credits-note").hidden = signedIn;
  if (signedIn) showPosition(await get("/api/staking"));
  else showPosition(null);
}

function showPosition(position) {
  $("s-balance").textContent = position ? fmt(position.balance) : "–";
  $("s-staked").textContent = position ? fmt(position.staked) : "–";
  $("s-rewards").textContent = position ? fmt(position.rewards) : "–";
}

async function refreshStats() {
  const s = await get("/api/stats");
  $("stat-workers").textContent = fmt(s.activeWorkers);
  $("stat-queue").textContent = fmt(s.queueDepth);
  $("stat-jobs").textContent = fmt(s.jobsCompleted);
  $("stat-tps").textContent = fmt(s.tokensPerSec);
}

async function refreshTreasury() {
  treasury = await get(withQuery("/api/treasury", { limit: 500 }));
  $("t-balance").textContent = fmt(treasury.balance);
  $("t-burned").textContent = fmt(treasury.totalBurned);
  $("t-rewards").textContent = fmt(treasury.rewardsPaid);
  $("t-supply").textContent = fmt(treasury.circulatingSupply);
  $("t-price").textContent = fmt(treasury.price);
  drawChart();
}

function drawChart() {
  if (!treasury) return;
  const metric = $("t-metric").value;
  drawSeries(
    $("treasury-chart"),
    treasury.series.map((s) => ({ at: s.at, value: s[metric] })),
    fmt,
  );
}

/** Run `action`, showing its failure in `errorEl` (cleared first); `button` is disabled meanwhile. */
async function attempt(errorEl, action, button = null) {
  errorEl.textContent = "";
  if (button) button.disabled = true;
  try {
    await action();
  } catch (error) {
    errorEl.textContent = error.message;
  } finally {
    if (button) button.disabled = false;
  }
}

function every(ms, refresh) {
  setInterval(() => {
    if (!document.hidden) refresh().catch(() => {});
  }, ms);
}

const chat = new Chat(
  {
    list: $("messages"),
    form: $("composer"),
    prompt: $("prompt"),
    tier: $("tier"),
    send: $("send"),
    state: $("stream-state"),
    error: $("chat-error"),
  },
  { onSettled: () => refreshAccount().catch(() => {}) },
);

$("new-chat").addEventListener("click", () => chat.reset());

$("sign-in").addEventListener("click", (event) =>
  attempt($("wallet-error"), async () => {
    await signIn();
    chat.reset(); // conversations belong to who sent them: a new caller starts a new one
    await refreshAccount();
  }, event.currentTarget),
);

$("sign-out").addEventListener("click", (event) =>
  attempt($("wallet-error"), async () => {
    await signOut();
    chat.reset();
    await refreshAccount();
  }, event.currentTarget),
);

$("stake-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const path = event.submitter?.value === "unstake" ? "/api/staking/unstake" : "/api/staking/stake";
  attempt($("staking-error"), async () => {
    showPosition(await post(path, { amount: Number($("stake-amount").value) }));
    await refreshAccount();
  }, event.submitter);
});

$("image-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const button = $("generate");
  attempt($("image-error"), async () => {
    button.textContent = "Generating…";
    try {
      const { image } = await post("/api/images/generate", {
        prompt: $("image-prompt").value.trim(),
        style: $("image-style").value,
        aspect: $("image-aspect").value,
        nsfw: false,
      });
      $("image").src = image.url;
      $("image").alt = image.prompt;
      $("image-caption").textContent = `${image.prompt} · ${image.style}, ${image.aspect}`;
      $("image-result").hidden = false;
    } finally {
      button.textContent = "Generate";
    }
    await refreshAccount();
  }, button);
});

$("t-metric").addEventListener("change", drawChart);
window.addEventListener("resize", drawChart);

await Promise.all([
  attempt($("wallet-error"), refreshAccount),
  chat.restore(),
  refreshStats().catch(() => {}),
  refreshTreasury().catch(() => {}),
]);
every(STATS_EVERY_MS, refreshStats);
every(TREASURY_EVERY_MS, refreshTreasury);
document.body.dataset.ready = "true";
