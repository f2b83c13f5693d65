"""Takes README's TensorBoard screenshots in headless Chromium (not part of `make test`).

    make demo
    tensorboard --logdir runs/demo/tensorboard --port 6006 &
    python docs/screenshots.py            # needs chromium, chromium-driver and selenium

Writes docs/images/tensorboard_custom_scalars.png (the Custom Scalars tab: relu and sigmoid,
gradient norms on a log scale) and docs/images/tensorboard_depth_profile.png (the Images tab:
relu's and sigmoid's depth profiles at TensorBoard's default size).
"""

import argparse
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = "%5E(relu%7Csigmoid)%2Ftrain%24"  # ^(relu|sigmoid)/train$


def browser(width, height):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def custom_scalars(driver, url, path):
    driver.get(f"{url}/#custom_scalars&_smoothingWeight=0&regexInput={RUNS}")
    time.sleep(8)
    # Untick "Ignore outliers" (kept in local storage, not in the URL) and put the gradient
    # norm charts on a log scale (the cards' log-scale button), then wait for the redraw.
    driver.execute_script("""
        const deep = (root, sel, out = []) => {
            root.querySelectorAll(sel).forEach(e => out.push(e));
            root.querySelectorAll('*').forEach(e => e.shadowRoot && deep(e.shadowRoot, sel, out));
            return out;
        };
        for (const box of deep(document, 'paper-checkbox')) {
            if (box.textContent.includes('Ignore outliers') && box.checked) box.click();
        }
        for (const card of deep(document, 'tf-custom-scalar-multi-line-chart-card')) {
            if (!String(card.title).startsWith('gradient norm')) continue;
            for (const button of deep(card.shadowRoot || card, 'paper-icon-button')) {
                if (String(button.title).toLowerCase().includes('log')) button.click();
            }
        }
    """)
    time.sleep(4)
    driver.save_screenshot(path)


def images(driver, url, path):
    driver.get(f"{url}/#images&regexInput={RUNS}")
    time.sleep(8)
    driver.save_screenshot(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://localhost:6006")
    parser.add_argument("--out", default=os.path.join(HERE, "images"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    driver = browser(1400, 1000)
    try:
        custom_scalars(driver, args.url, os.path.join(args.out, "tensorboard_custom_scalars.png"))
        driver.set_window_size(1100, 760)
        images(driver, args.url, os.path.join(args.out, "tensorboard_depth_profile.png"))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
