// Drives facemag serve's web page in headless Chromium (playwright-core, Debian's chromium):
// uploads a photo, waits for the boxed faces and their matches, enrols a face under a name and
// checks the page then shows it.
//   node serve_page.cjs NPM_PREFIX URL PHOTO EXPECTED_PERSON NEW_NAME
// Prints one JSON line with what the page showed; exits 1 with the reason on failure.
const path = require("path");
const [prefix, url, photo, expected, newName] = process.argv.slice(2);
const { chromium } = require(path.join(prefix, "node_modules", "playwright-core"));

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu"],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById("model").textContent.includes("gallery"));
    await page.setInputFiles("#file", photo);
    await page.waitForSelector(".face .person", { timeout: 30000 });
    const first = page.locator(".face").first();
    const person = (await first.locator(".person").textContent()).trim();
    const box = (await first.locator(".box").textContent()).trim();
    const quality = Number(await first.locator(".quality").textContent());
    const candidates = await first.locator("table tr td:first-child").allTextContents();
    const canvas = await page.evaluate(() => {
      const c = document.getElementById("canvas");
      return [c.width, c.height];
    });
    if (person !== expected) throw new Error(`the page shows '${person}', expected '${expected}'`);
    // Enrol the face under a new name; the page identifies the photo again.
    await first.locator("input").fill(newName);
    await first.locator("button").click();
    await page.waitForFunction(
      (name) => document.querySelector(".face .person")?.textContent === name, newName,
      { timeout: 30000 });
    const status = await page.locator("#status").textContent();
    console.log(JSON.stringify({ person, box, quality, candidates, canvas, status, errors }));
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error("browser test: " + e.message);
  process.exit(1);
});
