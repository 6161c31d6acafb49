const port = Number(process.argv[2]);
const modules = process.argv[3];
const { createClient } = require(modules + "/redis");
const Redis = require(modules + "/ioredis");
const assert = require("assert");
(async () => {
  for (const RESP of [2, 3]) {
    const c = createClient({ socket: { port, host: "127.0.0.1" }, RESP });
    c.on("error", (e) => { console.error("client error", e); process.exit(1); });
    await c.connect();
    const k = `node${RESP}-${port}:`;
    assert.strictEqual(await c.set(k + "a", "1"), "OK");
    assert.strictEqual(await c.get(k + "a"), "1");
    assert.strictEqual(await c.get(k + "missing"), null);
    assert.deepStrictEqual(await c.mGet([k + "a", k + "missing"]), ["1", null]);
    assert.strictEqual(await c.set(k + "a", "2", { NX: true }), null);
    assert.strictEqual(await c.incrBy(k + "n", 5), 5);
    assert.strictEqual(await c.set(k + "t", "x", { EX: 100 }), "OK");
    const ttl = await c.ttl(k + "t");
    assert.ok(ttl > 0 && ttl <= 100, ttl);
    const pipe = [];
    for (let i = 0; i < 50; i++) pipe.push(c.set(k + "p" + i, String(i)));
    await Promise.all(pipe);
    const got = await Promise.all([...Array(50).keys()].map((i) => c.get(k + "p" + i)));
    assert.deepStrictEqual(got, [...Array(50).keys()].map(String));
    assert.strictEqual(await c.del([k + "a", k + "missing"]), 1);
    await c.quit();
  }
  const io = new Redis({ port, host: "127.0.0.1", lazyConnect: true });
  await io.connect();
  const k = `io-${port}:`;
  assert.strictEqual(await io.set(k + "a", "v"), "OK");
  assert.strictEqual(await io.get(k + "a"), "v");
  assert.strictEqual(await io.get(k + "missing"), null);
  const res = await io.pipeline().set(k + "b", "1").incr(k + "b").get(k + "b").exec();
  assert.deepStrictEqual(res.map((r) => r[1]), ["OK", 2, "2"]);
  io.disconnect();
  console.log("node-redis (RESP2, RESP3) and ioredis ok");
})().catch((e) => { console.error(e); process.exit(1); });
