// Kiosk page: asks /v1/chat/completions (streamed), shows the answer as it arrives, the quoted
// evidence and the sources, then asks whether it answered the question (/v1/feedback, kept in
// the device's field log); clears the conversation after an idle time. The next question may
// be asked once the quote is shown: it stops the answer still finishing. No external assets.
"use strict";
(function () {
  const STRINGS = {
    en: {
      title: "Ask the manuals", subtitle: "Answers come only from the manuals on this device, with the line they come from.",
      label: "Your question", ask: "Ask", clear: "Start over", empty: "Type a question below, for example: “What is the maximum pressure?”",
      thinking: "Looking in the manuals…", declined: "The manuals don't cover this. Try asking in other words, or ask a colleague.",
      evidence: "From the manual", sources: "Sources", busy: "Busy answering someone else. Trying again…",
      failed: "Something went wrong. Please ask again.", cleared: "The conversation was cleared.", close: "Close",
      source: "Read the passage", you: "You asked",
      helpedAsk: "Did this answer your question?", yes: "Yes", no: "No", lookingFor: "What were you looking for? (optional)", send: "Send", thanks: "Thank you.",
      finishing: "Still finishing the answer. You can ask your next question.", stopped: "Stopped for your next question; this answer was not finished.",
    },
    de: {
      title: "Fragen Sie die Handbücher", subtitle: "Antworten kommen nur aus den Handbüchern auf diesem Gerät, mit der Zeile, aus der sie stammen.",
      label: "Ihre Frage", ask: "Fragen", clear: "Neu beginnen", empty: "Geben Sie unten eine Frage ein, z. B.: „Wie hoch ist der maximale Druck?“",
      thinking: "Suche in den Handbüchern…", declined: "Dazu steht nichts in den Handbüchern. Versuchen Sie es mit anderen Worten oder fragen Sie eine Kollegin oder einen Kollegen.",
      evidence: "Aus dem Handbuch", sources: "Quellen", busy: "Gerade belegt. Neuer Versuch…",
      failed: "Etwas ist schiefgegangen. Bitte fragen Sie noch einmal.", cleared: "Das Gespräch wurde gelöscht.", close: "Schließen",
      source: "Abschnitt lesen", you: "Ihre Frage",
      helpedAsk: "Hat das Ihre Frage beantwortet?", yes: "Ja", no: "Nein", lookingFor: "Wonach haben Sie gesucht? (optional)", send: "Senden", thanks: "Danke.",
      finishing: "Die Antwort wird noch fertiggestellt. Sie können schon die nächste Frage stellen.", stopped: "Für Ihre nächste Frage angehalten; diese Antwort wurde nicht fertiggestellt.",
    },
    fr: {
      title: "Interrogez les manuels", subtitle: "Les réponses viennent uniquement des manuels de cet appareil, avec la ligne d'origine.",
      label: "Votre question", ask: "Demander", clear: "Recommencer", empty: "Tapez une question ci-dessous, par exemple : « Quelle est la pression maximale ? »",
      thinking: "Recherche dans les manuels…", declined: "Les manuels ne traitent pas ce point. Reformulez la question ou demandez à un collègue.",
      evidence: "Extrait du manuel", sources: "Sources", busy: "Occupé avec une autre question. Nouvel essai…",
      failed: "Une erreur est survenue. Veuillez reposer la question.", cleared: "La conversation a été effacée.", close: "Fermer",
      source: "Lire le passage", you: "Votre question",
      helpedAsk: "Cela a-t-il répondu à votre question ?", yes: "Oui", no: "Non", lookingFor: "Que cherchiez-vous ? (facultatif)", send: "Envoyer", thanks: "Merci.",
      finishing: "La réponse se termine. Vous pouvez déjà poser la question suivante.", stopped: "Arrêtée pour votre question suivante ; cette réponse n'a pas été terminée.",
    },
    es: {
      title: "Pregunte a los manuales", subtitle: "Las respuestas salen solo de los manuales de este equipo, con la línea de origen.",
      label: "Su pregunta", ask: "Preguntar", clear: "Empezar de nuevo", empty: "Escriba una pregunta abajo, por ejemplo: «¿Cuál es la presión máxima?»",
      thinking: "Buscando en los manuales…", declined: "Los manuales no tratan esto. Pruebe con otras palabras o pregunte a un compañero.",
      evidence: "Del manual", sources: "Fuentes", busy: "Ocupado con otra pregunta. Reintentando…",
      failed: "Algo salió mal. Vuelva a preguntar.", cleared: "La conversación se ha borrado.", close: "Cerrar",
      source: "Leer el pasaje", you: "Su pregunta",
      helpedAsk: "¿Ha respondido esto a su pregunta?", yes: "Sí", no: "No", lookingFor: "¿Qué buscaba? (opcional)", send: "Enviar", thanks: "Gracias.",
      finishing: "Terminando la respuesta. Ya puede hacer la siguiente pregunta.", stopped: "Detenida por su siguiente pregunta; esta respuesta no se terminó.",
    },
    nb: {
      title: "Spør håndbøkene", subtitle: "Svarene kommer bare fra håndbøkene på denne enheten, med linjen de kommer fra.",
      label: "Spørsmålet ditt", ask: "Spør", clear: "Begynn på nytt", empty: "Skriv et spørsmål nedenfor, for eksempel: «Hvor ofte må filteret skiftes?»",
      thinking: "Leter i håndbøkene…", declined: "Håndbøkene dekker ikke dette. Prøv å spørre med andre ord, eller spør en kollega.",
      evidence: "Fra håndboken", sources: "Kilder", busy: "Svarer noen andre. Prøver igjen…",
      failed: "Noe gikk galt. Spør igjen.", cleared: "Samtalen ble slettet.", close: "Lukk",
      source: "Les avsnittet", you: "Du spurte",
      helpedAsk: "Svarte dette på spørsmålet ditt?", yes: "Ja", no: "Nei", lookingFor: "Hva lette du etter? (valgfritt)", send: "Send", thanks: "Takk.",
      finishing: "Svaret gjøres ferdig. Du kan allerede stille neste spørsmål.", stopped: "Stoppet for ditt neste spørsmål; dette svaret ble ikke ferdig.",
    },
    nl: {
      title: "Vraag het de handleidingen", subtitle: "Antwoorden komen alleen uit de handleidingen op dit apparaat, met de regel waar ze vandaan komen.",
      label: "Uw vraag", ask: "Vragen", clear: "Opnieuw beginnen", empty: "Typ hieronder een vraag, bijvoorbeeld: „Hoe vaak moet het filter worden vervangen?”",
      thinking: "Zoeken in de handleidingen…", declined: "De handleidingen behandelen dit niet. Probeer het met andere woorden, of vraag een collega.",
      evidence: "Uit de handleiding", sources: "Bronnen", busy: "Bezig met een andere vraag. Opnieuw proberen…",
      failed: "Er ging iets mis. Stel de vraag opnieuw.", cleared: "Het gesprek is gewist.", close: "Sluiten",
      source: "Lees de passage", you: "Uw vraag",
      helpedAsk: "Heeft dit uw vraag beantwoord?", yes: "Ja", no: "Nee", lookingFor: "Waar zocht u naar? (optioneel)", send: "Versturen", thanks: "Dank u.",
      finishing: "Het antwoord wordt nog afgemaakt. U kunt al de volgende vraag stellen.", stopped: "Gestopt voor uw volgende vraag; dit antwoord is niet afgemaakt.",
    },
  };
  const settings = window.OUTPOST || {};
  const params = new URLSearchParams(location.search);
  const lang = STRINGS[params.get("lang")] ? params.get("lang") : (STRINGS[settings.lang] ? settings.lang : "en");
  const T = STRINGS[lang];
  const idleSeconds = Math.max(2, Number(params.get("idle")) || settings.idleReset || 90);
  const key = new URLSearchParams(location.hash.slice(1)).get("key");

  const $ = (id) => document.getElementById(id);
  const turns = $("turns"), form = $("ask"), question = $("question"), send = $("send");
  const status = $("status"), dialog = $("passage");
  let history = [];
  // The latest question's request: aborted by the next question (which may be asked once this
  // one's quote is on screen) and by "Start over".
  let controller = null;
  let idleTimer = null;

  document.documentElement.lang = lang;
  $("title").textContent = T.title;
  document.title = T.title;
  $("subtitle").textContent = T.subtitle;
  $("question-label").textContent = T.label;
  send.textContent = T.ask;
  $("clear").textContent = T.clear;
  $("empty").textContent = T.empty;
  $("passage-close").textContent = T.close;

  function headers() {
    const h = { "Content-Type": "application/json", "X-Outpost-Client": "kiosk" };
    if (key) h.Authorization = "Bearer " + key;
    return h;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function reset(announce) {
    if (controller) controller.abort();
    controller = null;
    send.disabled = false;
    history = [];
    turns.replaceChildren();
    question.value = "";
    $("empty").hidden = false;
    status.textContent = announce ? T.cleared : "";
    document.body.dataset.state = "idle";
    question.focus();
  }

  function touch() {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => { if (history.length || turns.children.length) reset(true); }, idleSeconds * 1000);
  }
  ["keydown", "pointerdown", "input", "focusin"].forEach((e) => document.addEventListener(e, touch, { passive: true }));

  async function showPassage(chunkId, source, heading, quotes) {
    const r = await fetch("/v1/passages/" + chunkId, { headers: headers() });
    if (!r.ok) return;
    const p = await r.json();
    $("passage-title").textContent = source + (heading ? " › " + heading : "");
    const box = $("passage-text");
    box.replaceChildren();
    // Highlight the quoted spans by their offsets in the passage text.
    const spans = quotes.filter((q) => q.chunk_id === chunkId).sort((a, b) => a.start - b.start);
    let at = 0;
    for (const q of spans) {
      if (q.start < at) continue;
      box.append(p.text.slice(at, q.start));
      box.append(el("mark", "", p.text.slice(q.start, q.end)));
      at = q.end;
    }
    box.append(p.text.slice(at));
    dialog.showModal();
    box.focus();
  }

  // Where a quote is from, short: the file and the last heading (a PDF's heading path can hold
  // separators and sentence fragments).
  function where(q) {
    const section = (q.heading || "").split(" > ").pop();
    return q.source.split("/").pop() + (section ? " › " + section : "");
  }

  function quoteBox(q, provisional) {
    const box = el("blockquote", "evidence" + (provisional ? " provisional" : ""));
    box.setAttribute("aria-label", T.evidence);
    const lead = q.lead ? q.lead.text + " … " : "";
    box.append(el("p", "", "“" + lead + q.text + "”"));
    box.append(el("cite", "", where(q)));
    return box;
  }

  // "Did this answer your question?": one tap records the verdict; after No, one optional
  // line says what was wanted. It never takes the focus from the question box.
  function verdict(id, helpful, note) {
    return fetch("/v1/feedback", {
      method: "POST", headers: headers(), body: JSON.stringify({ id, helpful, note: note || null }),
    }).catch(() => {});
  }

  function feedbackBox(id) {
    const box = el("div", "feedback");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", T.helpedAsk);
    box.append(el("span", "feedback-ask", T.helpedAsk));
    const thanks = () => { box.replaceChildren(el("span", "feedback-thanks", T.thanks)); box.dataset.state = "thanked"; };
    for (const [label, helpful] of [[T.yes, true], [T.no, false]]) {
      const b = el("button", "secondary verdict", label);
      b.type = "button";
      b.dataset.helpful = String(helpful);
      b.addEventListener("click", () => {
        verdict(id, helpful);
        if (helpful) return thanks();
        const form = el("form", "feedback-note");
        const input = el("input");
        input.type = "text";
        input.maxLength = 500;
        input.placeholder = T.lookingFor;
        input.setAttribute("aria-label", T.lookingFor);
        const send = el("button", "secondary", T.send);
        send.type = "submit";
        form.append(input, send);
        form.addEventListener("submit", (e) => {
          e.preventDefault();
          if (input.value.trim()) verdict(id, false, input.value.trim());
          thanks();
        });
        box.replaceChildren(form);
        box.dataset.state = "asking";
      });
      box.append(b);
    }
    return box;
  }

  function finish(item, answerEl, info, id) {
    item.querySelectorAll(".provisional").forEach((b) => b.remove());
    if (info.declined) {  // a decline stands alone: quotes under it would read as a contradiction
      answerEl.textContent = T.declined;
      answerEl.classList.add("declined");
      item.dataset.state = "declined";
    } else {
      item.dataset.state = "done";
      item.dataset.mode = info.answer_mode || "generated";
      if (info.answer_mode === "quoted") answerEl.remove();  // the manual's line is the answer
    }
    const quotes = info.evidence || [];
    if (!info.declined && quotes.length) item.append(quoteBox(quotes[0], false));
    const cites = info.declined ? [] : (info.citations || []);
    if (cites.length) {
      const list = el("ul", "sources");
      list.setAttribute("aria-label", T.sources);
      for (const c of cites) {
        const li = el("li");
        const file = c.source.split("/").pop();
        const section = (c.heading || "").split(" > ").pop();
        const b = el("button", "secondary source", "[" + c.n + "] " + file + (section ? " › " + section : ""));
        b.type = "button";
        b.title = T.source;
        b.setAttribute("aria-label", T.source + ": " + c.source + (c.heading ? ", " + c.heading : ""));
        b.addEventListener("click", () => showPassage(c.chunk_id, c.source, c.heading, quotes));
        li.append(b);
        list.append(li);
      }
      item.append(list);
    }
    if (settings.feedback && id) item.append(feedbackBox(id));
  }

  // A turn the next question stopped before its last event: what it showed stays, the quote
  // no longer provisional (it is the manual's line as ranked), but it is marked unfinished: no
  // sources, no verdict (the server kept no answer to rate), and not in the history.
  function stopped(item, answerEl) {
    item.dataset.state = "stopped";
    item.querySelectorAll(".provisional").forEach((b) => b.classList.remove("provisional"));
    if (!answerEl.textContent) answerEl.remove();
    item.append(el("p", "stopped-note", T.stopped));
  }

  async function ask(text, attempt) {
    const item = el("li", "turn");
    item.dataset.state = "streaming";
    item.append(el("p", "asked", text));
    const answerEl = el("p", "answer");
    item.append(answerEl);
    turns.append(item);
    $("empty").hidden = true;
    status.textContent = T.thinking;
    document.body.dataset.state = "busy";
    const mine = controller = new AbortController();
    const current = () => controller === mine;  // not stopped by a later question or a reset
    // Once the quote (or the first text) is on screen the next question may be asked; the
    // turn stays "streaming" until its last event, and the status line says so.
    let freed = false;
    const free = () => {
      if (freed || !current()) return;
      freed = true;
      send.disabled = false;
      document.body.dataset.state = "streaming";
      status.textContent = T.finishing;
    };
    const messages = history.concat([{ role: "user", content: text }]);
    let info = null, written = "", id = null, retrying = false;
    const whole = () => {  // the last event came: the checked answer, its sources, its verdict
      finish(item, answerEl, info, id);
      if (!info.declined) history.push({ role: "user", content: text }, { role: "assistant", content: written });
      history = history.slice(-8);
    };
    try {
      const r = await fetch("/v1/chat/completions", {
        method: "POST", headers: headers(), signal: mine.signal,
        body: JSON.stringify({ messages, stream: true, user: "kiosk" }),
      });
      if (r.status === 429 || r.status === 503) {
        item.remove();
        const wait = Number(r.headers.get("Retry-After") || 2) * 1000;
        if (attempt < 5) {  // the Ask button stays disabled while it waits
          retrying = true;
          status.textContent = T.busy;
          return setTimeout(() => { if (current()) ask(text, attempt + 1); }, wait);
        }
        throw new Error("busy");
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const line = buffer.slice(0, cut).trim();
          buffer = buffer.slice(cut + 2);
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          const event = JSON.parse(data);
          if (event.error) throw new Error(event.error.message);
          if (event.id) id = event.id;  // the completion's id: what a verdict names
          const delta = event.choices[0].delta || {};
          if (event.outpost && event.outpost.quote) {  // ranked before generation: show it now
            item.append(quoteBox(event.outpost.quote, true));
            free();
            continue;
          }
          if (delta.content) { written += delta.content; answerEl.textContent = written; free(); }
          if (event.outpost) info = event.outpost;
        }
      }
      if (!info) throw new Error("incomplete answer");
      whole();
      if (current()) status.textContent = "";
    } catch (e) {
      if (e.name === "AbortError") {  // stopped by the next question, or cleared with the page
        if (!item.isConnected) return;
        if (info) whole();  // only [DONE] was still to come
        else stopped(item, answerEl);  // its unfinished text is not kept in the history
        return;
      }
      item.dataset.state = "failed";
      answerEl.textContent = T.failed;
      if (current()) status.textContent = "";
    } finally {
      if (current() && !retrying) {
        controller = null;
        document.body.dataset.state = "idle";
        send.disabled = false;
      }
      touch();
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = question.value.trim();
    if (!text || send.disabled) return;
    if (controller) controller.abort();  // the previous answer, still finishing: stopped as it is
    send.disabled = true;
    question.value = "";
    ask(text, 0);
  });
  question.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  $("clear").addEventListener("click", () => reset(false));
  document.body.dataset.state = "idle";
  question.focus();
})();
