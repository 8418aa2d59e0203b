// A trigger's form generated from a process's parameters (their JSON Schema), and the crontab
// of a schedule in words.

// The schema of one parameter, its `null` alternative aside.
function plain(schema) {
  const options = (schema.anyOf || schema.oneOf || []).filter((option) => option.type !== "null");
  return options.length === 1 ? { ...schema, ...options[0] } : schema;
}

function kind(schema) {
  if (schema.enum) return "enum";
  if (schema.type === "boolean") return "boolean";
  if (schema.type === "integer" || schema.type === "number") return schema.type;
  if (schema.type === "string") return "string";
  return "json";
}

// The form's fields: [{name, kind, schema, input}] made with `h`, and how to read them.
export function schemaFields(parameters, h) {
  const properties = (parameters && parameters.properties) || {};
  const required = new Set((parameters && parameters.required) || []);
  return Object.entries(properties).map(([name, raw]) => {
    const schema = plain(raw);
    const type = kind(schema);
    const shown = raw.default === undefined ? "" : JSON.stringify(raw.default);
    let input;
    if (type === "enum" || type === "boolean") {
      const values = type === "enum" ? schema.enum : [true, false];
      input = h("select", { name },
        h("option", { value: "" }, required.has(name) ? "choose" : `default (${shown || "none"})`),
        values.map((value) => h("option", { value: JSON.stringify(value) }, String(value))));
    } else if (type === "integer" || type === "number") {
      input = h("input", {
        name, type: "number", step: type === "integer" ? "1" : "any",
        min: schema.minimum, max: schema.maximum, placeholder: shown,
      });
    } else if (type === "string") {
      const secret = schema.format === "password" || raw.writeOnly;
      input = h("input", { name, type: secret ? "password" : "text", placeholder: shown, autocomplete: "off" });
    } else {
      input = h("textarea", { name, rows: 2, placeholder: shown || "JSON" });
    }
    if (required.has(name)) input.required = true;
    const help = [raw.description || schema.description, required.has(name) ? "required" : ""]
      .filter(Boolean).join("; ");
    return { name, type, input, label: raw.title || name, help };
  });
}

// The parameters the form holds: an empty field is left out (the process's default applies).
// Numbers and JSON are sent as typed, for the API to check and name what is wrong.
export function readFields(fields) {
  const body = {};
  for (const { name, type, input } of fields) {
    const text = input.value.trim();
    if (text === "") continue;
    if (type === "enum" || type === "boolean") body[name] = JSON.parse(input.value);
    else if (type === "integer" || type === "number") body[name] = Number.isNaN(Number(text)) ? text : Number(text);
    else if (type === "json") {
      try { body[name] = JSON.parse(text); } catch (_) { body[name] = text; }
    } else body[name] = input.value;
  }
  return body;
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const MONTHS = ["", "January", "February", "March", "April", "May", "June", "July", "August",
  "September", "October", "November", "December"];
const DAY_NAMES = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };
const MONTH_NAMES = { jan: 1, feb: 2, mar: 3, apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12 };

function named(field, names, table) {
  return field.toLowerCase().replace(/[a-z]{3}/g, (word) => (word in names ? String(names[word]) : word))
    .split(",").map((part) => part.replace(/\d+/g, (n) => table[Number(n)] || n).replace("-", " to ")).join(", ");
}

function pad(n) { return String(n).padStart(2, "0"); }

// "30 16 * * 1-5" → "at 16:30, Monday to Friday"
export function cronWords(crontab) {
  if (!crontab) return "not scheduled";
  const fields = crontab.trim().split(/\s+/);
  if (fields.length !== 5) return crontab;
  const [minute, hour, dom, month, dow] = fields;
  const parts = [];
  if (/^\d+$/.test(minute) && /^\d+(,\d+)*$/.test(hour)) {
    parts.push(`at ${hour.split(",").map((hh) => `${pad(hh)}:${pad(minute)}`).join(", ")}`);
  } else {
    if (minute === "*") parts.push("every minute");
    else if (/^\*\/\d+$/.test(minute)) parts.push(`every ${minute.slice(2)} minutes`);
    else parts.push(`at minute ${minute}`);
    if (/^\*\/\d+$/.test(hour)) parts.push(`every ${hour.slice(2)} hours`);
    else if (hour !== "*") parts.push(`during hour ${hour.replace("-", " to ")}`);
    else if (minute !== "*" && !minute.startsWith("*/")) parts.push("of every hour");
  }
  if (dom !== "*") parts.push(`on day ${dom.replace("-", " to ")} of the month`);
  if (month !== "*") parts.push(`in ${named(month, MONTH_NAMES, MONTHS)}`);
  if (dow !== "*") parts.push(/^\*\/\d+$/.test(dow) ? `every ${dow.slice(2)} days of the week` : named(dow, DAY_NAMES, DAYS));
  else if (dom === "*" && month === "*") parts.push("every day");
  return parts.join(", ");
}
