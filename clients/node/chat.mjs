#!/usr/bin/env node
// Send one chat message to an ashao core over gRPC and print the answer's tokens as they arrive.
//
//   make node-client                                   # generates clients/node/gen from proto/
//   node clients/node/chat.mjs "Explain how ashao routes a prompt."
//   node clients/node/chat.mjs --core core.example:50051 --tls --tier pro --api-key ak_… "Hello"
//
// The client is generated from proto/ by buf (protoc-gen-es) and speaks plain gRPC over HTTP/2
// (@connectrpc/connect-node's gRPC transport), exactly as the Python facade and workers do.
// Exit code: 0 when the answer completed, 1 when the job or the call failed, 2 for a usage error.

import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { ChatService } from "./gen/ashao/v1/chat_pb.js";

const USAGE = `usage: node clients/node/chat.mjs [options] MESSAGE

options:
  --core HOST:PORT  the core's gRPC address [default: 127.0.0.1:50051; env ASHAO_GRPC_ADDR]
  --tier TIER       free, basic, pro or ultra [default: free; env ASHAO_TIER]
  --api-key KEY     an API key (ak_…) for priced tiers [default: none; env ASHAO_API_KEY]
  --tls             reach the core over TLS [default: off; env ASHAO_CORE_TLS=1]
  --timeout-s N     give up after N seconds [default: 300; env ASHAO_TIMEOUT_S]
  -h, --help        this help`;

function options(argv, env) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      core: { type: "string", default: env.ASHAO_GRPC_ADDR || "127.0.0.1:50051" },
      tier: { type: "string", default: env.ASHAO_TIER || "free" },
      "api-key": { type: "string", default: env.ASHAO_API_KEY || "" },
      tls: { type: "boolean", default: ["1", "true", "on"].includes((env.ASHAO_CORE_TLS || "").toLowerCase()) },
      "timeout-s": { type: "string", default: env.ASHAO_TIMEOUT_S || "300" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const timeoutS = Number(values["timeout-s"]);
  if (values.help) return { help: true };
  if (positionals.length !== 1 || !positionals[0].trim()) throw new Error("give exactly one MESSAGE");
  if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new Error("--timeout-s: must be a positive number");
  return { ...values, timeoutS, content: positionals[0] };
}

async function main() {
  let opts;
  try {
    opts = options(process.argv.slice(2), process.env);
  } catch (err) {
    console.error(`chat.mjs: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (opts.help) {
    console.log(USAGE);
    return 0;
  }
  const baseUrl = `${opts.tls ? "https" : "http"}://${opts.core}`;
  // One HTTP/2 connection for both calls, closed at the end (an idle one would keep node running).
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager, defaultTimeoutMs: opts.timeoutS * 1000 });
  const client = createClient(ChatService, transport);
  const headers = opts["api-key"] ? { authorization: `Bearer ${opts["api-key"]}` } : {};

  try {
    const sent = await client.sendMessage({ tier: opts.tier, content: opts.content }, { headers });
    console.error(`job ${sent.jobId} in conversation ${sent.conversationId}`);
    // The core ends the stream after the job's outcome (done or error): read it to its end.
    let outcome = null;
    for await (const ev of client.streamJob({ jobId: sent.jobId }, { headers })) {
      switch (ev.event.case) {
        case "chunk":
          process.stdout.write(ev.event.value.tokens.join(""));
          break;
        case "done":
          process.stdout.write("\n");
          console.error(`done: ${ev.event.value.tokens} tokens`);
          outcome = 0;
          break;
        case "error":
          process.stdout.write("\n");
          console.error(`error: ${ev.event.value.reason}: ${ev.event.value.message}`);
          outcome = 1;
          break;
      }
    }
    if (outcome === null) console.error("error: the stream ended before the job's outcome");
    return outcome ?? 1;
  } catch (err) {
    const e = ConnectError.from(err);
    console.error(`error: ${Code[e.code]}: ${e.rawMessage}`);
    return 1;
  } finally {
    sessionManager.abort();
  }
}

process.exitCode = await main();
