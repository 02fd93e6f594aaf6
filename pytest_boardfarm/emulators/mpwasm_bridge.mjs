// Serve the REPL of MicroPython's WebAssembly port on a local TCP port, like
// the UART of an emulated board.
//
// Usage: node mpwasm_bridge.mjs MICROPYTHON_MJS HOST PORT
// Prints "listening PORT" once it listens (PORT 0: any free port). One client
// at a time: a new connection replaces the old one, as a re-opened serial port
// does. Every byte received goes to the REPL in order; what MicroPython prints
// goes back unchanged. Exits when its stdin closes (the parent holds the pipe).
//
// One exception: the raw-paste request (Ctrl-E "A" Ctrl-A) is dropped. This
// port answers it and then waits for the source in a loop that never returns
// to JavaScript, so no byte could ever reach it again. Dropped, the request
// gets no answer, and clients fall back to plain raw mode after a short wait.
import net from "node:net";
import { pathToFileURL } from "node:url";

const RAW_PASTE_REQUEST = [0x05, 0x41, 0x01];
const [modulePath, host, portText] = process.argv.slice(2);
const { loadMicroPython } = await import(pathToFileURL(modulePath).href);

let client = null;
let pending = [];

function flush() {
  if (pending.length && client) client.write(Buffer.from(pending));
  pending = [];
}

function emit(data) {
  if (!client) return; // nobody listens, as on a UART with nothing attached
  for (const byte of data) pending.push(byte);
  if (pending.length >= 4096) flush();
}

// Output goes to the client unless a reboot is under way (see softReboot).
let quiet = false;
const out = (data) => quiet || emit(data);
let mp = await loadMicroPython({ stdout: out, stderr: out, linebuffer: false });
mp.replInit();
let rawMode = false; // which REPL a soft reboot returns to, as pyexec remembers it

// Copy the files (not /dev, /proc) into a fresh interpreter's file system.
function copyTree(from, to, dir) {
  for (const name of from.readdir(dir)) {
    if (name === "." || name === ".." || (dir === "/" && (name === "dev" || name === "proc"))) continue;
    const path = dir === "/" ? `/${name}` : `${dir}/${name}`;
    if (from.isDir(from.stat(path).mode)) {
      if (!to.analyzePath(path).exists) to.mkdir(path);
      copyTree(from, to, path);
    } else {
      to.writeFile(path, from.readFile(path));
    }
  }
}

// The REPL asked to exit (Ctrl-D at an empty prompt): this port leaves the
// reboot to its host, so the bridge does what a board's main loop does. RAM
// is a new interpreter's, the files are kept, and it comes back in the same REPL.
async function softReboot() {
  emit(Buffer.from("MPY: soft reboot\r\n"));
  const fresh = await loadMicroPython({ stdout: out, stderr: out, linebuffer: false });
  copyTree(mp.FS, fresh.FS, "/");
  mp = fresh;
  quiet = rawMode; // a board rebooted in the raw REPL prints only the raw banner
  mp.replInit();
  quiet = false;
  if (rawMode) await mp.replProcessCharWithAsyncify(0x01);
}

// Bytes for MicroPython, fed one at a time, each after the previous one was processed.
const input = [];
let held = []; // a possible start of the raw-paste request
let pumping = false;

function receive(data) {
  for (const byte of data) {
    held.push(byte);
    const prefix = held.every((b, i) => b === RAW_PASTE_REQUEST[i]);
    if (prefix && held.length === RAW_PASTE_REQUEST.length) held = [];
    else if (!prefix) {
      input.push(...held);
      held = [];
    }
  }
  pump();
}

async function pump() {
  if (pumping) return;
  pumping = true;
  try {
    while (input.length) {
      const byte = input.shift();
      if (byte === 0x01) rawMode = true;
      else if (byte === 0x02) rawMode = false;
      if (await mp.replProcessCharWithAsyncify(byte)) await softReboot();
      flush();
    }
  } finally {
    pumping = false;
  }
}

const server = net.createServer((socket) => {
  if (client) client.destroy();
  client = socket;
  held = [];
  socket.setNoDelay(true);
  socket.on("data", (data) => {
    if (client === socket) receive(data);
  });
  socket.on("close", () => {
    if (client === socket) client = null;
  });
  socket.on("error", () => {});
});

server.listen(parseInt(portText, 10), host, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

process.stdin.on("end", () => process.exit(0));
process.stdin.on("close", () => process.exit(0));
process.stdin.resume();
