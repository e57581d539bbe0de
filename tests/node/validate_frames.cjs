// Validate wire frames against the message payloads of an AsyncAPI document, with Ajv
// (draft-07, the dialect of AsyncAPI's schemas).
// Usage: NODE_PATH=clients/js/node_modules node validate_frames.cjs FILE
// FILE holds {"document": {...}, "frames": [{"message": "<key>", "frame": {...}}]}, a key of
// channels.socket.messages. Prints one JSON line per frame: {"message", "valid", "errors"}.
const fs = require("fs");
const Ajv = require("ajv");

const { document, frames } = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
ajv.addSchema(document, "asyncapi");
for (const { message, frame } of frames) {
  const pointer = `asyncapi#/channels/socket/messages/${message}/payload`;
  const validate = ajv.getSchema(pointer);
  if (validate === undefined) {
    console.log(JSON.stringify({ message, valid: false, errors: ["no such message"] }));
    continue;
  }
  const valid = validate(frame);
  console.log(JSON.stringify({ message, valid, errors: validate.errors || [] }));
}
