// A person at a browser: open the one-time registration link, register a passkey, create a
// wallet and sign a transfer, with Chromium's virtual authenticator standing in for the
// platform authenticator (CDP WebAuthn domain). Prints one JSON line with what happened.
//
// usage: node passkey.mjs REGISTRATION_URL
import { chromium } from "playwright-core";

const url = process.argv[2];
if (!url) {
  console.error("usage: node passkey.mjs REGISTRATION_URL");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let code = 0;
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  await page.goto(url);
  const status = () => page.textContent("#status");
  const step = async (button, expect) => {
    await page.click(button);
    await page.waitForFunction(
      (want) => {
        const t = document.getElementById("status").textContent;
        return t.includes(want) || t.startsWith("error");
      },
      expect,
      { timeout: 20000 },
    );
    const text = await status();
    if (text.startsWith("error")) throw new Error(`${button}: ${text}`);
    return JSON.parse(text);
  };
  const registered = await step("#register", "registered");
  const wallet = await step("#wallet", "wallet");
  const transfer = await step("#transfer", "transfer");
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  console.log(JSON.stringify({
    registered,
    wallet,
    transfer,
    authenticator: credentials.map((c) => ({ signCount: c.signCount, rpId: c.rpId })),
  }));
} catch (e) {
  console.error(String(e && e.stack || e));
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
