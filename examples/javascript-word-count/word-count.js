// word-count, written in JavaScript: counts the words, lines and bytes of a
// text. The same contract as the Rust word-count: `{"text": string}` in, the
// counts out, pure compute, granted nothing. Built into a component by
// `jco componentize` against toolcell's WIT (see README.md).

const inputSchema = {
  type: 'object',
  properties: { text: { type: 'string', description: 'The text to count.' } },
  required: ['text'],
  additionalProperties: false,
};

const outputSchema = {
  type: 'object',
  properties: {
    bytes: { type: 'integer', minimum: 0 },
    lines: { type: 'integer', minimum: 0 },
    words: { type: 'integer', minimum: 0 },
  },
  required: ['bytes', 'lines', 'words'],
};

// A thrown value becomes the `err` of invoke's result: a `tool-error`.
function invalid(message) {
  return { tag: 'invalid-input', val: message };
}

export function describe() {
  return {
    name: 'word-count-js',
    description: 'Counts the words, lines and bytes of a text (written in JavaScript).',
    inputSchema: JSON.stringify(inputSchema),
    outputSchema: JSON.stringify(outputSchema),
  };
}

export function invoke(input) {
  let data;
  try {
    data = JSON.parse(input);
  } catch (error) {
    throw invalid(`input is not JSON: ${error.message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw invalid('input must be a JSON object');
  }
  const unknown = Object.keys(data).filter((key) => key !== 'text').sort();
  if (unknown.length > 0) {
    throw invalid(`field \`${unknown[0]}\`: unknown field, expected \`text\``);
  }
  if (!('text' in data)) {
    throw invalid('missing field `text`');
  }
  const { text } = data;
  if (typeof text !== 'string') {
    throw invalid('field `text`: expected a string');
  }
  // Lines as Rust's str::lines counts them: a final newline ends the last line.
  const lines = text === '' ? 0 : text.replace(/\r?\n$/, '').split(/\r?\n/).length;
  const words = text.split(/\s+/).filter((word) => word.length > 0).length;
  const bytes = new TextEncoder().encode(text).length;
  return JSON.stringify({ bytes, lines, words });
}
