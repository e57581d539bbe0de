// The MessagePack subset: known encodings, round trips of random values, hostile input.
import assert from "node:assert/strict";
import { test } from "node:test";
import { MAX_DEPTH, decodeMsgpack, encodeMsgpack } from "../../../src/lexicons/client_js/lexicons.js";

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const bytes = (text) => new Uint8Array(Buffer.from(text, "hex"));

test("known encodings, at every size boundary", () => {
  const cases = [
    [null, "c0"], [false, "c2"], [true, "c3"],
    [0, "00"], [127, "7f"], [128, "cc80"], [255, "ccff"], [256, "cd0100"], [65535, "cdffff"],
    [65536, "ce00010000"], [2 ** 32, "cf0000000100000000"], [-1, "ff"], [-32, "e0"], [-33, "d0df"],
    [-128, "d080"], [-129, "d1ff7f"], [-32769, "d2ffff7fff"], [-(2 ** 31) - 1, "d3ffffffff7fffffff"],
    [1.5, "cb3ff8000000000000"], [Number.MAX_SAFE_INTEGER + 1, "cb4340000000000000"],
    ["", "a0"], ["a", "a161"], ["é", "a2c3a9"], ["x".repeat(32), "d920" + "78".repeat(32)],
    [[], "90"], [[1, [2]], "920191" + "02"], [{}, "80"], [{ a: 1 }, "81a16101"],
    [new Uint8Array([1, 2]), "c4020102"],
  ];
  for (const [value, encoded] of cases) {
    assert.equal(hex(encodeMsgpack(value)), encoded, JSON.stringify(value));
    assert.deepEqual(decodeMsgpack(bytes(encoded)), value);
  }
  assert.equal(hex(encodeMsgpack({ a: undefined, b: 1 })), "81a16201"); // as JSON.stringify
  assert.equal(hex(encodeMsgpack("y".repeat(256)).slice(0, 3)), "da0100");
  assert.equal(hex(encodeMsgpack(new Array(16).fill(0)).slice(0, 3)), "dc0010");
  assert.equal(decodeMsgpack(bytes("ca3fc00000")), 1.5); // float32 decodes
  assert.equal(decodeMsgpack(bytes("cfffffffffffffffff")), 2n ** 64n - 1n); // past 2**53: BigInt
});

/** A seeded generator (mulberry32): the same values on every run, many shapes. */
function generator(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomValue(random, depth) {
  const pick = Math.floor(random() * (depth > 3 ? 6 : 8));
  const int = () => Math.floor((random() - 0.5) * 2 ** Math.floor(random() * 54));
  switch (pick) {
    case 0: return null;
    case 1: return random() < 0.5;
    case 2: return int();
    case 3: return (random() - 0.5) * 1e6;
    case 4: return String.fromCodePoint(...Array.from({ length: Math.floor(random() * 40) }, () => Math.floor(random() * 0x2ffff) % 0xd7ff));
    case 5: return new Uint8Array(Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256)));
    case 6: return Array.from({ length: Math.floor(random() * 20) }, () => randomValue(random, depth + 1));
    default: return Object.fromEntries(Array.from({ length: Math.floor(random() * 20) }, (_, i) => [`k${i}${random()}`, randomValue(random, depth + 1)]));
  }
}

test("decode(encode(value)) is value, for a thousand random values", () => {
  const random = generator(17);
  for (let i = 0; i < 1000; i++) {
    const value = randomValue(random, 0);
    assert.deepEqual(decodeMsgpack(encodeMsgpack(value)), value);
  }
});

test("hostile input throws, never hangs or allocates what it claims", () => {
  const hostile = [
    "", "a5616263", "dc0010", "ddffffffff", "dfffffffff", "c6ffffffff00", "d9", "cd01",
    "c1", "d4010203", "c7010100", "0101", "81c00101", "8190c0", "a2c328",
  ];
  for (const input of hostile) assert.throws(() => decodeMsgpack(bytes(input)), input);
  const deep = new Uint8Array(MAX_DEPTH + 2).fill(0x91);
  assert.throws(() => decodeMsgpack(deep), /nested too deeply/);
  let nested = [];
  for (let i = 0; i < MAX_DEPTH + 2; i++) nested = [nested];
  assert.throws(() => encodeMsgpack(nested), /nested too deeply/);
  assert.throws(() => encodeMsgpack(() => 1), TypeError);
  assert.throws(() => encodeMsgpack(2n ** 64n), RangeError);
});

test("a __proto__ key is data, never the prototype", () => {
  const decoded = decodeMsgpack(bytes("81a95f5f70726f746f5f5f81a16101"));
  assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
  assert.deepEqual(Object.keys(decoded), ["__proto__"]);
  assert.equal(decoded.a, undefined);
});
