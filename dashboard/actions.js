// The operator's actions on the customer shown (relink, audit now, offboard), each confirmed in a
// dialog first; the result is announced after the customer is read again.

import { api } from "./api.js";
import { openCustomer, shownTenant } from "./customer.js";
import { $ } from "./dom.js";

const ACTIONS = {
  relink: {
    title: "Relink this customer now?",
    ok: "Relink",
    text: (t) => `The recorded identity of ${t} is linked to our partner ID now, as you, and recorded in its history.`,
    path: "relink",
    done: (a) => `Relinked: ${a.outcome}${a.reason ? ` (${a.reason})` : ""}`,
  },
  audit: {
    title: "Audit this customer's attribution now?",
    ok: "Audit now",
    text: (t) => `An attribution audit of ${t} is queued now; your name is recorded in its history. The findings appear when it ends.`,
    path: "audit",
    done: (a) => `Audit queued: ${a.runId}`,
  },
  offboard: {
    title: "Offboard this customer?",
    ok: "Offboard",
    text: (t) => `The partner link of ${t} is removed now and no longer checked each night, as you, and recorded in its history. Relinking it later needs its identity again.`,
    path: "offboard",
    done: (a) => `Offboarded: ${a.outcome}${a.reason ? ` (${a.reason})` : ""}`,
  },
};
let pendingAction = null;

function confirmAction(name) {
  const action = ACTIONS[name];
  pendingAction = name;
  $("confirm-title").textContent = action.title;
  $("confirm-ok").textContent = action.ok;
  $("confirm-ok").className = name === "offboard" ? "danger" : "act";
  $("confirm-text").textContent = action.text(shownTenant());
  const dialog = $("confirm");
  dialog.returnValue = "";
  dialog.showModal();
}

async function actionConfirmed(name) {
  const action = ACTIONS[name];
  const tenant = shownTenant();
  $(name).disabled = true;
  $("action-result").textContent = `${action.ok}...`;
  let result;
  try {
    const answer = await api(`customers/${encodeURIComponent(tenant)}/${action.path}`, { method: "POST" });
    result = action.done(answer);
  } catch (error) {
    result = `${action.ok} refused: ${error.message}`;
  }
  await openCustomer(tenant); // the history now shows the action; then the result is announced
  $("action-result").textContent = result;
  $(name).focus();
}

function dialogClosed() {
  const name = pendingAction;
  pendingAction = null;
  if ($("confirm").returnValue === "confirm") {
    actionConfirmed(name);
  } else {
    $(name).focus();
  }
}

export function wireActions() {
  Object.keys(ACTIONS).forEach((name) => $(name).addEventListener("click", () => confirmAction(name)));
  $("confirm").addEventListener("close", dialogClosed);
}
