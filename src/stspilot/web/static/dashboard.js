// Progressive enhancement for the dashboard's server-rendered pygal charts: each bar gets a
// native hover title from the values pygal wrote next to it (no library, no network). The
// pages are complete without this script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const trigger of document.querySelectorAll("figure.chart .tooltip-trigger")) {
    const group = trigger.parentNode;
    const value = group.querySelector("desc.value");
    const label = group.querySelector("desc.x_label");
    const serie = group.closest(".series");
    const legend = serie ? serie.getAttribute("class").match(/serie-(\d+)/) : null;
    let name = "";
    if (legend) {
      const texts = trigger.ownerSVGElement.querySelectorAll(".legends .legend text");
      const t = texts[Number(legend[1])];
      name = t ? t.textContent : "";
    }
    const parts = [label ? label.textContent : "", name, value ? value.textContent : ""];
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = parts.filter(Boolean).join(" · ");
    trigger.appendChild(title);
  }
});
