// The OpenAI-compatible API driven by the official `openai` npm package, as a Node app would use it.
// Usage: node openai_client.mjs <baseURL> <apiKey>. Prints one JSON object: what each call returned
// or raised (tests/facade/test_openai_node.py checks it).
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30_000 });
const hi = [{ role: "user", content: "hi" }];
const out = {};

const whole = await client.chat.completions.create({ model: "ashao-free", messages: hi });
out.whole = {
  id: whole.id,
  content: whole.choices[0].message.content,
  finish: whole.choices[0].finish_reason,
  usage: whole.usage,
};

const stream = await client.chat.completions.create({
  model: "ashao-free",
  messages: [{ role: "system", content: "Count." }, ...hi],
  max_tokens: 4,
  stream: true,
  stream_options: { include_usage: true },
});
out.stream = { text: "", finish: null, usage: null, chunks: 0 };
for await (const chunk of stream) {
  out.stream.chunks += 1;
  if (chunk.choices.length > 0) {
    out.stream.text += chunk.choices[0].delta.content ?? "";
    out.stream.finish = chunk.choices[0].finish_reason ?? out.stream.finish;
  }
  if (chunk.usage) out.stream.usage = chunk.usage;
}

out.models = [];
for await (const model of client.models.list()) out.models.push(model.id);

async function failure(call, kind) {
  try {
    await call();
    return null;
  } catch (e) {
    return { kind: e instanceof kind, status: e.status, code: e.code, param: e.param };
  }
}
out.notFound = await failure(
  () => client.chat.completions.create({ model: "gpt-4o", messages: hi }),
  OpenAI.NotFoundError,
);
out.badRequest = await failure(
  () => client.chat.completions.create({ model: "ashao-free", messages: hi, temperature: 9 }),
  OpenAI.BadRequestError,
);
const stranger = new OpenAI({ baseURL, apiKey: "ak_not_a_key", maxRetries: 0 });
out.unauthenticated = await failure(
  () => stranger.chat.completions.create({ model: "ashao-free", messages: hi }),
  OpenAI.AuthenticationError,
);

console.log(JSON.stringify(out));
