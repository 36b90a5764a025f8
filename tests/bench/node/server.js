// The benchmark's Node comparison: OpenAI's sample token route, as a frontend team would
// write it (express + fetch): take the request, POST the upstream with the real key and a
// fixed session, return the upstream's JSON. No auth, no policy, no limits.
import express from "express";

const [, , port, upstream, apiKey] = process.argv;
const app = express();
app.post("/v1/realtime/sessions", async (req, res) => {
  try {
    const r = await fetch(`${upstream}/realtime/sessions`, {
      method: "POST",
      headers: { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini-realtime-preview", voice: "ash" }),
    });
    res.status(r.status).json(await r.json());
  } catch (error) {
    res.status(502).json({ error: { message: String(error) } });
  }
});
app.get("/healthz", (req, res) => res.json({ status: "ok" }));
app.listen(Number(port), "127.0.0.1");
