"use strict";
(function () {
  var table = document.getElementById("results");
  if (!table) return;
  var body = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var state = { sort: "", tag: "", tool: "", status: "", q: "" };
  // Seed rows (data-parent: their aggregate's data-id) fold under their aggregate row: sorting
  // and filtering act on the other rows ("tops"), each aggregate's seed rows move along right
  // after it and show only while its toggle is open. (Without this script every row shows.)
  var tops = [], kids = Object.create(null), ids = Object.create(null);
  Array.prototype.forEach.call(body.rows, function (row) {
    if (row.getAttribute("data-kind") === "aggregate") ids[row.getAttribute("data-id")] = true;
  });
  Array.prototype.forEach.call(body.rows, function (row) {
    var parent = row.getAttribute("data-parent");
    if (parent !== null && ids[parent]) (kids[parent] = kids[parent] || []).push(row);
    else tops.push(row);
  });
  function kidsOf(row) {
    if (row.getAttribute("data-kind") !== "aggregate") return [];
    return kids[row.getAttribute("data-id")] || [];
  }
  function isOpen(row) { return row.getAttribute("data-expanded") === "true"; }
  function setOpen(row, open) {
    row.setAttribute("data-expanded", open ? "true" : "false");
    var button = row.querySelector("button.fold");
    if (button) button.setAttribute("aria-expanded", open ? "true" : "false");
  }

  function cellKey(row, index) {
    var cell = row.cells[index];
    var value = cell.getAttribute("data-sort");
    return value === null ? cell.textContent.trim() : value;
  }
  function asNumber(text) {
    return text !== "" && isFinite(Number(text)) ? Number(text) : null;
  }
  // Numbers compare as numbers (before text); text compares naturally (run2 < run10).
  function compare(a, b) {
    var x = asNumber(a), y = asNumber(b);
    if (x !== null && y !== null) return x - y;
    if (x !== null) return -1;
    if (y !== null) return 1;
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }
  function columnIndex(column) {
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].getAttribute("data-column") === column) return i;
    }
    return -1;
  }
  // Sort the table by a column: what a header click does, and what #sort=col:desc does.
  function sortTable(column, direction) {
    var index = columnIndex(column);
    if (index < 0) return false;
    var sign = direction === "desc" ? -1 : 1;
    var rows = tops.slice();
    rows.sort(function (r1, r2) {
      var a = cellKey(r1, index), b = cellKey(r2, index);
      if (a === "" || b === "") {
        if (a !== b) return a === "" ? 1 : -1;  // empty cells last, either direction
      } else {
        var c = sign * compare(a, b);
        if (c !== 0) return c;
      }
      return Number(r1.getAttribute("data-order")) - Number(r2.getAttribute("data-order"));
    });
    rows.forEach(function (row) {
      body.appendChild(row);
      kidsOf(row).forEach(function (kid) { body.appendChild(kid); });
    });
    heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
    heads[index].setAttribute("aria-sort", sign < 0 ? "descending" : "ascending");
    state.sort = column + ":" + (sign < 0 ? "desc" : "asc");
    table.setAttribute("data-sort", state.sort);
    return true;
  }
  // The text the search looks in: the experiment cell, without its toggle's label.
  function searchText(row) {
    var text = "";
    Array.prototype.forEach.call(row.cells[1].childNodes, function (node) {
      if (!(node.classList && node.classList.contains("fold"))) text += node.textContent;
    });
    return text.toLowerCase();
  }
  function applyFilters() {
    var shown = 0;
    var q = state.q.toLowerCase();
    tops.forEach(function (row) {
      var tags = JSON.parse(row.getAttribute("data-tags") || "[]");
      var ok = (!state.tag || tags.indexOf(state.tag) >= 0) &&
        (!state.tool || row.getAttribute("data-tool") === state.tool) &&
        (!state.status || row.getAttribute("data-status") === state.status) &&
        (!q || searchText(row).indexOf(q) >= 0);
      row.hidden = !ok;
      var open = ok && isOpen(row);
      kidsOf(row).forEach(function (kid) { kid.hidden = !open; });
      if (ok) shown++;
    });
    document.getElementById("shown").textContent = shown + " of " + tops.length + " shown";
  }
  function writeHash() {
    var parts = [];
    ["sort", "tag", "tool", "status", "q"].forEach(function (k) {
      if (state[k]) parts.push(k + "=" + encodeURIComponent(state[k]));
    });
    var target = parts.length ? "#" + parts.join("&") : location.pathname;
    try { history.replaceState(null, "", target); }
    catch (e) { /* some browsers refuse on file: pages; the page still works */ }
  }
  function readHash() {
    var params = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var eq = part.indexOf("=");
      if (eq > 0) params[part.slice(0, eq)] = decodeURIComponent(part.slice(eq + 1));
    });
    ["tag", "tool", "status", "q"].forEach(function (k) {
      state[k] = params[k] || "";
      var input = document.getElementById(k === "q" ? "filter-text" : "filter-" + k);
      if (input) input.value = state[k];
    });
    if (params.sort) {
      var cut = params.sort.lastIndexOf(":");
      var column = cut > 0 ? params.sort.slice(0, cut) : params.sort;
      var direction = cut > 0 ? params.sort.slice(cut + 1) : "asc";
      sortTable(column, direction === "desc" ? "desc" : "asc");
    }
    applyFilters();
  }
  heads.forEach(function (head) {
    var button = head.querySelector("button");
    if (!button) return;
    button.addEventListener("click", function () {
      var column = head.getAttribute("data-column");
      var ascending = head.getAttribute("aria-sort") !== "ascending";
      sortTable(column, ascending ? "asc" : "desc");
      writeHash();
    });
  });
  [["filter-tag", "tag"], ["filter-tool", "tool"], ["filter-status", "status"],
   ["filter-text", "q"]].forEach(function (pair) {
    var input = document.getElementById(pair[0]);
    if (!input) return;
    input.addEventListener("input", function () {
      state[pair[1]] = input.value;
      applyFilters();
      writeHash();
    });
  });
  // The toggles: shown (they are hidden for pages read without this script), folded.
  tops.forEach(function (row) {
    var button = row.querySelector("button.fold");
    if (!button) return;
    setOpen(row, false);
    button.hidden = false;
    button.addEventListener("click", function () {
      setOpen(row, !isOpen(row));
      applyFilters();
    });
  });
  window.xstashSort = sortTable;
  window.addEventListener("hashchange", readHash);
  readHash();
})();
