// A Foxglove WebSocket client nobody here wrote (@foxglove/ws-protocol, over ws), driven by
// tests/bustools/test_foxglove.py: it prints what it sees as JSON lines and decodes each message by its
// channel's encoding and schema, as Foxglove does.
//   node client.mjs URL [--subscribe TOPIC...] [--publish TOPIC JSON] [--quiet]
// --quiet (bench/foxglove.py): decode every message, print only how many at the end (SIGTERM).
import protocol from "@foxglove/ws-protocol";
const { FoxgloveClient } = protocol;
import WebSocket from "ws";

const [url, ...rest] = process.argv.slice(2);
const subscribe = [];
let publish = null;
let quiet = false;
let received = 0;
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === "--publish") { publish = { topic: rest[i + 1], json: rest[i + 2] }; i += 2; }
  else if (rest[i] === "--quiet") quiet = true;
  else if (rest[i] !== "--subscribe") subscribe.push(rest[i]);
}
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
// The SDK server speaks the same protocol under its newer name (foxglove.sdk.v1); this client names the older.
const client = new FoxgloveClient({ ws: new WebSocket(url, ["foxglove.sdk.v1"]) });
const bySubscription = new Map();
const decoder = new TextDecoder();

client.on("serverInfo", (info) => {
  say({ event: "serverInfo", name: info.name, capabilities: info.capabilities });
  if (publish) {
    const id = client.advertise({ topic: publish.topic, encoding: "json", schemaName: publish.topic });
    // Sent twice, a moment apart: the server's answer to the advertisement comes first.
    for (const delay of [300, 1500]) setTimeout(() => {
      client.sendMessage(id, new TextEncoder().encode(publish.json));
      say({ event: "sent", topic: publish.topic });
    }, delay);
  }
});
client.on("status", (status) => say({ event: "status", level: status.level, message: status.message }));
client.on("advertise", (channels) => {
  if (!quiet) say({ event: "advertise", channels: channels.map((c) => ({ topic: c.topic, encoding: c.encoding,
    schemaName: c.schemaName, schemaEncoding: c.schemaEncoding, schema: JSON.parse(c.schema) })) });
  for (const channel of channels) {
    if (subscribe.includes(channel.topic)) {
      bySubscription.set(client.subscribe(channel.id), channel);
      say({ event: "subscribed", topic: channel.topic });
    }
  }
});
client.on("message", ({ subscriptionId, timestamp, data }) => {
  const channel = bySubscription.get(subscriptionId);
  const decoded = JSON.parse(decoder.decode(data)); // the channel's encoding is json
  if (channel.schemaName === "foxglove.CompressedImage") {
    const bytes = Buffer.from(decoded.data, "base64");
    decoded.data = { bytes: bytes.length, head: bytes.subarray(0, 4).toString("hex") };
  }
  received += 1;
  if (quiet) return;
  say({ event: "message", topic: channel.topic, schemaName: channel.schemaName, timestamp: String(timestamp),
        decoded });
});
client.on("error", (error) => { say({ event: "error", message: String(error) }); });
client.on("close", () => { say({ event: "close" }); process.exit(0); });
process.on("SIGTERM", () => { say({ event: "count", received }); client.close(); process.exit(0); });
