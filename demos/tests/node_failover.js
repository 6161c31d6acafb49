// node-redis and ioredis across a leader kill: `before` writes every type
// and a transaction through the leader; the test kills it; `after` reads
// them back through a survivor and goes on writing.
const port = Number(process.argv[2]);
const modules = process.argv[3];
const phase = process.argv[4];
const { createClient } = require(modules + "/redis");
const Redis = require(modules + "/ioredis");
const assert = require("assert");
(async () => {
  const c = createClient({ socket: { port, host: "127.0.0.1" }, RESP: 3 });
  c.on("error", (e) => { console.error("client error", e); process.exit(1); });
  await c.connect();
  const io = new Redis({ port, host: "127.0.0.1" });
  if (phase === "before") {
    await c.hSet("nk:h", { f: "v" });
    await c.rPush("nk:l", ["a", "b"]);
    await c.sAdd("nk:s", "m");
    await c.zAdd("nk:z", [{ score: 2.5, value: "m" }]);
    assert.deepStrictEqual(await c.multi().incr("nk:n").rPush("nk:l", "c").exec(), [1, 3]);
    const r = await io.multi().incr("nk:io").set("nk:t", "x", "EX", 600).exec();
    assert.deepStrictEqual(r.map((x) => x[1]), [1, "OK"]);
  } else {
    assert.deepStrictEqual({ ...(await c.hGetAll("nk:h")) }, { f: "v" });
    assert.deepStrictEqual(await c.lRange("nk:l", 0, -1), ["a", "b", "c"]);
    assert.deepStrictEqual(await c.sMembers("nk:s"), ["m"]);
    assert.strictEqual(Number(await c.zScore("nk:z", "m")), 2.5);
    assert.strictEqual(await c.get("nk:n"), "1");
    assert.strictEqual(await io.get("nk:io"), "1");
    const ttl = await io.ttl("nk:t");
    assert.ok(ttl > 0 && ttl <= 600, ttl);
    assert.deepStrictEqual(await c.multi().incr("nk:n").lPop("nk:l").exec(), [2, "a"]);
  }
  await c.quit();
  io.disconnect();
  console.log(`node clients: ${phase} ok`);
})().catch((e) => { console.error(e); process.exit(1); });
