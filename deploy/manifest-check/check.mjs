#!/usr/bin/env node
// Checks for deploy/check-manifests.sh. Two modes:
//
//   node check.mjs manifests FILE.yaml [--external KIND/NAME ...]
//       Every object of a rendered multi-document YAML file is validated:
//       1. schema: the Kubernetes 1.34 OpenAPI schema of its apiVersion/kind (kubernetes-models: types, required
//          fields, enums, int32/int-or-string/quantity formats); an unknown apiVersion/kind is an error;
//       2. strict fields: every field the schema does not define is an error (kubectl --validate=strict does the
//          same): the validator is run on a proxy that records which fields the schema reads;
//       3. API-server rules the schemas do not carry: object names (DNS-1123), label keys and values, port names
//          (IANA_SVC_NAME), named probe ports that exist, workload selectors that match their pod template;
//       4. references: ConfigMaps, Secrets, PersistentVolumeClaims, ServiceAccounts, a StatefulSet's Service and a
//          PodDisruptionBudget's pods must be in the same file, except those named with --external KIND/NAME;
//       5. policy: images pinned (a tag other than latest, or a digest), requests and a memory limit on every
//          container, non-root, read-only root filesystem, no privilege escalation, all capabilities dropped, probes
//          on long-running server containers, and no Secret with data (secrets are referenced, never committed);
//       6. least privilege: no service-account token mounted unless the account is bound to a Role in the file;
//          no credential-named key with a value in a ConfigMap;
//       7. network: a pod template that exposes the cluster's ports (named silo, gateway) is selected by a
//          NetworkPolicy for Ingress whose rules admit those ports only from labelled pods (no allow-all).
//
//   node check.mjs dockerfiles FILE... [--dockerignore PATH]
//       Our rules for deploy/docker/*.Dockerfile (dockerfilelint runs beside it): base images pinned, a non-root
//       USER in the final stage, no credentials in ENV/ARG/LABEL or anywhere in the text, a HEALTHCHECK decision
//       (NONE is fine: the probes live in k8s/), exec-form ENTRYPOINT, COPY rather than ADD, absolute WORKDIR,
//       apt-get with --no-install-recommends; and a .dockerignore that keeps .git, bin/obj and node_modules out.
//
// Exit code 0: no errors; 1: errors (each printed as FILE: [object] path: message); 2: usage.

import { readFileSync, existsSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const errors = [];
const fail = (where, message) => errors.push(`${where}: ${message}`);

// ------------------------------------------------------------------------------------------------ manifests

function modulePath(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) return null;
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (!/^v\d+((alpha|beta)\d+)?$/.test(version ?? "")) return null;
  return group === "" ? `kubernetes-models/${version}/${kind}` : `kubernetes-models/${group}/${version}/${kind}`;
}

async function modelFor(apiVersion, kind) {
  const path = modulePath(apiVersion, kind);
  if (!path) return null;
  let mod;
  try {
    mod = await import(path);
  } catch (e) {
    if (e?.code === "ERR_MODULE_NOT_FOUND" || e?.code === "ERR_PACKAGE_PATH_NOT_EXPORTED") return null;
    throw e;
  }
  return mod[kind] ?? null;
}

// Runs `validate` on a proxy of `root` and records, per object path, the fields the schema read.
function track(root) {
  const read = new Map();
  const wrap = (value, path) => {
    if (value === null || typeof value !== "object") return value;
    return new Proxy(value, {
      get(target, key, receiver) {
        const v = Reflect.get(target, key, receiver);
        if (typeof key !== "string") return v;
        if (!Array.isArray(target)) {
          if (!read.has(path)) read.set(path, new Set());
          read.get(path).add(key);
        }
        return Object.prototype.hasOwnProperty.call(target, key) ? wrap(v, `${path}/${key}`) : v;
      },
    });
  };
  return { proxy: wrap(root, ""), read };
}

// Fields present in `value` that the schema never read, in objects whose schema has properties (it read at least
// one): free-form objects (labels are read as maps, so they count as read) are left alone.
function unknownFields(value, path, read, out) {
  if (Array.isArray(value)) {
    value.forEach((v, i) => unknownFields(v, `${path}/${i}`, read, out));
    return;
  }
  if (value === null || typeof value !== "object") return;
  const seen = read.get(path);
  for (const [k, v] of Object.entries(value)) {
    if (seen && seen.size > 0 && !seen.has(k)) out.push(`${path}/${k}`);
    else unknownFields(v, `${path}/${k}`, read, out);
  }
}

const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const labelName = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const ianaSvcName = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const labelNamedKinds = new Set(["Service", "Namespace"]);

function checkLabels(where, labels, what) {
  for (const [k, v] of Object.entries(labels ?? {})) {
    const [prefix, name] = k.includes("/") ? k.split("/", 2) : [null, k];
    if (prefix !== null && (prefix.length > 253 || !dns1123Subdomain.test(prefix))) fail(where, `${what} key '${k}': prefix is not a DNS subdomain`);
    if (!name || name.length > 63 || !labelName.test(name)) fail(where, `${what} key '${k}': name part must be <= 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends`);
    if (what === "label" && (typeof v !== "string" || v.length > 63 || !labelValue.test(v))) fail(where, `label '${k}': value '${v}' is not a valid label value`);
  }
}

function podSpecOf(obj) {
  switch (obj.kind) {
    case "Pod": return { spec: obj.spec, path: "/spec", labels: obj.metadata?.labels };
    case "Deployment": case "StatefulSet": case "DaemonSet": case "ReplicaSet": case "Job":
      return { spec: obj.spec?.template?.spec, path: "/spec/template/spec", labels: obj.spec?.template?.metadata?.labels };
    case "CronJob":
      return { spec: obj.spec?.jobTemplate?.spec?.template?.spec, path: "/spec/jobTemplate/spec/template/spec", labels: obj.spec?.jobTemplate?.spec?.template?.metadata?.labels };
    default: return null;
  }
}

function matches(selector, labels) {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels?.[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = labels && Object.prototype.hasOwnProperty.call(labels, e.key);
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

function imagePinned(image) {
  if (typeof image !== "string" || image.length === 0) return false;
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return true;
  const last = image.split("/").pop();
  const colon = last.lastIndexOf(":");
  if (colon < 0) return false;
  const tag = last.slice(colon + 1);
  return tag.length > 0 && tag !== "latest";
}

function checkPod(where, obj, pod, refs) {
  const { spec, path } = pod;
  if (!spec) return;
  const isJob = obj.kind === "Job" || obj.kind === "CronJob" || (obj.kind === "Pod" && spec.restartPolicy === "Never");
  if (spec.securityContext?.runAsNonRoot !== true) fail(where, `${path}/securityContext/runAsNonRoot must be true`);
  if (spec.serviceAccountName) refs.push(["ServiceAccount", spec.serviceAccountName, `${path}/serviceAccountName`]);
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, v]));
  for (const v of spec.volumes ?? []) {
    if (v.persistentVolumeClaim) refs.push(["PersistentVolumeClaim", v.persistentVolumeClaim.claimName, `${path}/volumes/${v.name}`]);
    if (v.configMap) refs.push(["ConfigMap", v.configMap.name, `${path}/volumes/${v.name}`, v.configMap.optional]);
    if (v.secret) refs.push(["Secret", v.secret.secretName, `${path}/volumes/${v.name}`, v.secret.optional]);
    if (v.hostPath) fail(where, `${path}/volumes/${v.name}: hostPath volumes are not allowed`);
  }
  const all = [...(spec.initContainers ?? []).map((c) => ["initContainers", c]), ...(spec.containers ?? []).map((c) => ["containers", c])];
  for (const [list, c] of all) {
    const cw = `${path}/${list}/${c.name}`;
    if (!imagePinned(c.image)) fail(where, `${cw}/image '${c.image}' is not pinned (use an exact tag or a digest, never latest)`);
    const r = c.resources ?? {};
    for (const res of ["cpu", "memory"]) if (r.requests?.[res] === undefined) fail(where, `${cw}/resources/requests/${res} is missing`);
    if (r.limits?.memory === undefined) fail(where, `${cw}/resources/limits/memory is missing`);
    for (const res of Object.keys(r.limits ?? {}))
      if (res.includes("/") && r.requests?.[res] !== undefined && String(r.requests[res]) !== String(r.limits[res]))
        fail(where, `${cw}/resources: extended resource ${res} must request what it limits`);
    const sc = c.securityContext ?? {};
    if (sc.readOnlyRootFilesystem !== true) fail(where, `${cw}/securityContext/readOnlyRootFilesystem must be true`);
    if (sc.allowPrivilegeEscalation !== false) fail(where, `${cw}/securityContext/allowPrivilegeEscalation must be false`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) fail(where, `${cw}/securityContext/capabilities/drop must include ALL`);
    if (sc.privileged === true) fail(where, `${cw}: privileged containers are not allowed`);
    if (sc.runAsUser === 0) fail(where, `${cw}/securityContext/runAsUser must not be 0`);
    const portNames = new Set();
    for (const p of c.ports ?? []) {
      if (p.name !== undefined) {
        if (p.name.length > 15 || !ianaSvcName.test(p.name)) fail(where, `${cw}/ports: name '${p.name}' is not a valid port name (<= 15 lower-case alphanumerics and '-')`);
        portNames.add(p.name);
      }
    }
    for (const probe of ["livenessProbe", "readinessProbe", "startupProbe"]) {
      const port = c[probe]?.httpGet?.port ?? c[probe]?.tcpSocket?.port ?? c[probe]?.grpc?.port;
      if (typeof port === "string" && !portNames.has(port)) fail(where, `${cw}/${probe}: port '${port}' is not a port of the container`);
    }
    if (list === "containers" && !isJob && (c.ports ?? []).length > 0 && (!c.readinessProbe || !c.livenessProbe))
      fail(where, `${cw}: a long-running server container needs a readinessProbe and a livenessProbe`);
    for (const e of c.env ?? []) {
      const from = e.valueFrom ?? {};
      if (from.secretKeyRef) refs.push(["Secret", from.secretKeyRef.name, `${cw}/env/${e.name}`, from.secretKeyRef.optional]);
      if (from.configMapKeyRef) refs.push(["ConfigMap", from.configMapKeyRef.name, `${cw}/env/${e.name}`, from.configMapKeyRef.optional, from.configMapKeyRef.key]);
      if (e.value !== undefined && /(AccountKey=|SharedAccessSignature=|-----BEGIN [A-Z ]*PRIVATE KEY)/.test(e.value)) fail(where, `${cw}/env/${e.name}: a credential written into the manifest`);
    }
    for (const e of c.envFrom ?? []) {
      if (e.configMapRef) refs.push(["ConfigMap", e.configMapRef.name, `${cw}/envFrom`, e.configMapRef.optional]);
      if (e.secretRef) refs.push(["Secret", e.secretRef.name, `${cw}/envFrom`, e.secretRef.optional]);
    }
    for (const m of c.volumeMounts ?? []) if (!volumes.has(m.name)) fail(where, `${cw}/volumeMounts: no volume named '${m.name}'`);
  }
}

async function checkManifests(file, external) {
  let docs;
  try {
    docs = parseAllDocuments(readFileSync(file, "utf8"), { uniqueKeys: true });
  } catch (e) {
    fail(file, `cannot read: ${e.message}`);
    return;
  }
  const objects = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) fail(file, `YAML: ${e.message}`);
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue;
    objects.push(obj);
  }
  if (objects.length === 0) fail(file, "no objects");
  const have = new Set();
  const configMapKeys = new Map();
  const refs = [];
  const podLabels = [];
  for (const obj of objects) {
    const name = obj?.metadata?.name;
    const where = `${file}: [${obj?.kind ?? "?"} ${name ?? "?"}]`;
    const Model = await modelFor(obj?.apiVersion, obj?.kind);
    if (!Model) {
      fail(where, `unknown apiVersion/kind '${obj?.apiVersion}/${obj?.kind}'`);
      continue;
    }
    const { proxy, read } = track(obj);
    try {
      Model.prototype.validate.call(proxy);
    } catch (e) {
      const list = e.errors ?? [{ instancePath: "", message: e.message }];
      for (const err of list) fail(where, `schema: ${err.instancePath || "/"} ${err.message}${err.params?.allowedValues ? ` (${err.params.allowedValues.join(", ")})` : ""}`);
    }
    const unknown = [];
    unknownFields(obj, "", read, unknown);
    for (const u of unknown) fail(where, `strict: unknown field ${u}`);

    if (typeof name !== "string") continue;
    have.add(`${obj.kind}/${name}`);
    const max = labelNamedKinds.has(obj.kind) ? 63 : 253;
    if (name.length > max || !(labelNamedKinds.has(obj.kind) ? dns1123Label : dns1123Subdomain).test(name))
      fail(where, `metadata/name '${name}' is not a valid ${labelNamedKinds.has(obj.kind) ? "DNS-1123 label" : "DNS-1123 subdomain"}`);
    checkLabels(where, obj.metadata?.labels, "label");
    checkLabels(where, obj.metadata?.annotations, "annotation");

    if (obj.kind === "ConfigMap") configMapKeys.set(name, new Set(Object.keys({ ...(obj.data ?? {}), ...(obj.binaryData ?? {}) })));
    if (obj.kind === "Secret" && (Object.keys(obj.data ?? {}).length > 0 || Object.keys(obj.stringData ?? {}).length > 0))
      fail(where, "a Secret with data is committed: reference secrets, create them out of band (deploy/README.md)");
    if (obj.kind === "StatefulSet" && obj.spec?.serviceName) refs.push(["Service", obj.spec.serviceName, `${where} /spec/serviceName`]);
    if (obj.kind === "RoleBinding") {
      refs.push([obj.roleRef?.kind, obj.roleRef?.name, `${where} /roleRef`]);
      for (const s of obj.subjects ?? []) {
        if (s.kind !== "ServiceAccount") continue;
        refs.push(["ServiceAccount", s.name, `${where} /subjects`]);
        if (!s.namespace) fail(where, `/subjects: ServiceAccount ${s.name} needs a namespace`);
      }
    }

    const pod = podSpecOf(obj);
    if (pod) {
      checkLabels(where, pod.labels, "label");
      if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"].includes(obj.kind) && !matches(obj.spec?.selector, pod.labels))
        fail(where, "/spec/selector does not match /spec/template/metadata/labels");
      podLabels.push(pod.labels ?? {});
      const podRefs = [];
      checkPod(where, obj, pod, podRefs);
      for (const r of podRefs) refs.push([r[0], r[1], `${where} ${r[2]}`, r[3], r[4]]);
    }
  }
  for (const obj of objects.filter((o) => o?.kind === "PodDisruptionBudget" || o?.kind === "Service")) {
    const selector = obj.kind === "Service" ? (obj.spec?.selector ? { matchLabels: obj.spec.selector } : null) : obj.spec?.selector;
    if (selector && !podLabels.some((l) => matches(selector, l)))
      fail(`${file}: [${obj.kind} ${obj.metadata?.name}]`, "selects no pod template in this file");
  }
  checkNetworkPolicies(file, objects);
  // A mounted API token only for a service account some RoleBinding grants a Role (the Kubernetes hosting component).
  const bound = new Set(objects.filter((o) => o?.kind === "RoleBinding").flatMap((o) => (o.subjects ?? []).filter((x) => x.kind === "ServiceAccount").map((x) => x.name)));
  for (const obj of objects) {
    const pod = podSpecOf(obj);
    if (!pod?.spec) continue;
    const sa = pod.spec.automountServiceAccountToken === false ? null : (pod.spec.serviceAccountName ?? "default");
    if (sa !== null && !bound.has(sa))
      fail(`${file}: [${obj.kind} ${obj.metadata?.name}]`, `${pod.path}/automountServiceAccountToken must be false: service account '${sa}' is bound to no Role here, so the pod needs no API token`);
  }
  // Secrets only from Secrets: a ConfigMap key that names a credential must not carry a value.
  for (const obj of objects.filter((o) => o?.kind === "ConfigMap"))
    for (const [k, v] of Object.entries(obj.data ?? {}))
      if (secretName.test(k) && String(v).trim() !== "")
        fail(`${file}: [ConfigMap ${obj.metadata?.name}]`, `/data/${k}: a credential in a ConfigMap (use a Secret, as an env secretKeyRef or a mounted file)`);
  for (const [kind, name, where, optional, key] of refs) {
    const id = `${kind}/${name}`;
    if (have.has(id)) {
      if (kind === "ConfigMap" && key !== undefined && !optional && !configMapKeys.get(name)?.has(key)) fail(where, `ConfigMap ${name} has no key '${key}'`);
      continue;
    }
    if (optional || external.has(id)) continue;
    fail(where, `refers to ${id}, which is not in this file (name it with --external ${id} if it is created elsewhere)`);
  }
}

// ------------------------------------------------------------------------------------------------ network policy

// The ports of the cluster's protocol: a workload that exposes one must be covered by a NetworkPolicy that admits it
// only from labelled pods (no empty peer, no ipBlock, no namespace-wide selector without a pod selector).
const clusterPorts = new Set(["silo", "gateway"]);

function ruleCoversPort(rule, container) {
  if (!rule.ports || rule.ports.length === 0) return true;   // no ports: every port
  return rule.ports.some((p) => p.port === undefined || p.port === container.name || p.port === container.containerPort
    || (typeof p.port === "number" && p.endPort !== undefined && container.containerPort >= p.port && container.containerPort <= p.endPort));
}

function peerIsOpen(peer) {
  if (peer.ipBlock) return true;
  const sel = peer.podSelector;
  const empty = (s) => !s || (Object.keys(s.matchLabels ?? {}).length === 0 && (s.matchExpressions ?? []).length === 0);
  if (peer.namespaceSelector !== undefined && empty(sel)) return true;
  return empty(sel);
}

function checkNetworkPolicies(file, objects) {
  const policies = objects.filter((o) => o?.kind === "NetworkPolicy");
  for (const obj of objects) {
    const pod = podSpecOf(obj);
    if (!pod) continue;
    const exposed = (pod.spec?.containers ?? []).flatMap((c) => c.ports ?? []).filter((p) => clusterPorts.has(p.name));
    if (exposed.length === 0) continue;
    const where = `${file}: [${obj.kind} ${obj.metadata?.name}]`;
    const covering = policies.filter((p) => (p.spec?.policyTypes ?? ["Ingress"]).includes("Ingress") && matches(p.spec?.podSelector, pod.labels ?? {}));
    if (covering.length === 0) {
      fail(where, `no NetworkPolicy selects these pods for Ingress: anyone who reaches the pod network reaches ports ${exposed.map((p) => p.name).join(", ")}`);
      continue;
    }
    for (const p of covering)
      (p.spec?.ingress ?? []).forEach((rule, i) => {
        for (const port of exposed) {
          if (!ruleCoversPort(rule, port)) continue;
          const from = rule.from ?? [];
          if (from.length === 0 || from.some(peerIsOpen))
            fail(`${file}: [NetworkPolicy ${p.metadata?.name}]`, `/spec/ingress/${i} allows port ${port.name} of ${obj.kind} ${obj.metadata?.name} from anyone (an empty peer, an ipBlock or a namespace without a pod selector): admit only labelled silo and client pods`);
        }
      });
  }
}

// ------------------------------------------------------------------------------------------------ Dockerfiles

function instructions(text) {
  const out = [];
  let current = null;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/\s+$/, "");
    if (current === null) {
      if (/^\s*(#|$)/.test(line)) return;
      current = { line: i + 1, text: "" };
    } else if (/^\s*#/.test(line)) return; // comments inside a continued instruction
    const continued = line.endsWith("\\");
    current.text += (current.text ? " " : "") + (continued ? line.slice(0, -1) : line).trim();
    if (!continued) {
      const m = current.text.match(/^(\w+)\s*(.*)$/);
      out.push({ line: current.line, op: m ? m[1].toUpperCase() : "", args: m ? m[2] : current.text });
      current = null;
    }
  });
  return out;
}

const secretName = /(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|ACCOUNT_?KEY|CONNECTION(_STRING)?|CREDENTIALS?)/i;
const secretText = /(AccountKey=[A-Za-z0-9+/=]{20,}|SharedAccessSignature=|sig=[A-Za-z0-9%]{20,}|-----BEGIN [A-Z ]*PRIVATE KEY-----|ghp_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16})/;

function checkDockerfile(file) {
  const text = readFileSync(file, "utf8");
  const ins = instructions(text);
  const at = (i) => `${file}:${i.line}`;
  if (secretText.test(text)) fail(file, "contains what looks like a credential");
  const stages = [];
  for (const i of ins) {
    if (i.op === "FROM") {
      const parts = i.args.split(/\s+/).filter((p) => !p.startsWith("--"));
      const image = parts[0];
      const alias = /^as$/i.test(parts[1] ?? "") ? parts[2] : null;
      const fromStage = stages.some((s) => s.alias === image);
      if (!fromStage && image !== "scratch") {
        if (image.includes("$")) fail(at(i), `FROM ${image}: base images are named literally, so that they are pinned where they are read`);
        else if (!imagePinned(image)) fail(at(i), `FROM ${image}: pin the base image to an exact tag or a digest (never latest)`);
        else if (!/@sha256:/.test(image) && /:(\d+|\d+\.\d+|lts|stable|current|slim)$/.test(image)) fail(at(i), `FROM ${image}: a moving tag; name the exact version`);
      }
      stages.push({ alias, image, user: null, healthcheck: false, entrypoint: null });
      continue;
    }
    const stage = stages[stages.length - 1];
    if (!stage) {
      if (i.op !== "ARG") fail(at(i), `${i.op} before the first FROM`);
      continue;
    }
    switch (i.op) {
      case "USER": stage.user = i.args.trim(); break;
      case "HEALTHCHECK": stage.healthcheck = true; break;
      case "ENTRYPOINT": stage.entrypoint = i.args.trim(); break;
      case "ADD":
        if (/https?:\/\//.test(i.args)) fail(at(i), "ADD of a URL: download in a RUN with a checksum, or COPY");
        else fail(at(i), "use COPY, not ADD, for local files");
        break;
      case "WORKDIR":
        if (!i.args.trim().startsWith("/")) fail(at(i), `WORKDIR ${i.args}: use an absolute path`);
        break;
      case "ENV": case "ARG": case "LABEL": {
        const pairs = [...i.args.matchAll(/([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*("[^"]*"|\S*)/g)];
        const single = i.op !== "LABEL" && pairs.length === 0 ? [[null, ...i.args.split(/\s+/, 2)]] : [];
        for (const [, key, value] of [...pairs, ...single]) {
          if (secretName.test(key) && value && value !== '""') fail(at(i), `${i.op} ${key}: no credentials in an image (pass them at run time)`);
        }
        break;
      }
      case "RUN":
        if (/apt-get\s+(-\S+\s+)*install/.test(i.args) && !/--no-install-recommends/.test(i.args)) fail(at(i), "apt-get install without --no-install-recommends");
        if (/\bcurl\b[^|]*\|\s*(ba)?sh/.test(i.args) || /\bwget\b[^|]*\|\s*(ba)?sh/.test(i.args)) fail(at(i), "piping a download into a shell");
        if (/\bsudo\b/.test(i.args)) fail(at(i), "sudo in a RUN");
        break;
      default: break;
    }
  }
  const final = stages[stages.length - 1];
  if (!final) {
    fail(file, "no FROM");
    return;
  }
  const user = final.user ?? "";
  if (!user) fail(file, "the final stage sets no USER: it would run as root");
  else if (/^(root|0)(:|$)/.test(user)) fail(file, `the final stage runs as ${user}`);
  else if (!/^\d+(:\d+)?$/.test(user)) fail(file, `USER ${user}: use a numeric UID (Kubernetes' runAsNonRoot can only verify a numeric one)`);
  if (!final.healthcheck) fail(file, "the final stage has no HEALTHCHECK instruction (HEALTHCHECK NONE where probes are external)");
  if (!final.entrypoint) fail(file, "the final stage has no ENTRYPOINT");
  else if (!final.entrypoint.startsWith("[")) fail(file, "ENTRYPOINT in shell form: use the exec form [\"...\"] so signals reach the program");
}

function checkDockerignore(file) {
  if (!existsSync(file)) {
    fail(file, "missing: the build context would include .git, build outputs and test fixtures");
    return;
  }
  const lines = readFileSync(file, "utf8").split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const allowlist = lines.includes("*");
  if (allowlist) {
    for (const bad of [".git", "tests", "node_modules"])
      if (lines.some((l) => l === `!${bad}` || l === `!${bad}/` || l.startsWith(`!${bad}/`))) fail(file, `re-includes ${bad}`);
    for (const need of ["bin", "obj"])
      if (!lines.some((l) => !l.startsWith("!") && new RegExp(`(^|/)${need}/?$`).test(l))) fail(file, `an allowlist must still exclude ${need}/ inside what it re-includes`);
  } else {
    for (const need of [".git", "bin", "obj", "node_modules"])
      if (!lines.some((l) => new RegExp(`(^|/)${need.replace(".", "\\.")}/?$`).test(l))) fail(file, `does not exclude ${need}`);
  }
}

// ------------------------------------------------------------------------------------------------ main

const [mode, ...rest] = process.argv.slice(2);
const external = new Set();
const files = [];
let dockerignore = null;
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === "--external") external.add(rest[++i]);
  else if (rest[i] === "--dockerignore") dockerignore = rest[++i];
  else files.push(rest[i]);
}
if (!["manifests", "dockerfiles"].includes(mode) || files.length === 0) {
  console.error("usage: check.mjs manifests FILE.yaml [--external KIND/NAME ...] | dockerfiles FILE... [--dockerignore PATH]");
  process.exit(2);
}
if (mode === "manifests") for (const f of files) await checkManifests(f, external);
else {
  for (const f of files) checkDockerfile(f);
  if (dockerignore) checkDockerignore(dockerignore);
}
for (const e of errors) console.error(e);
if (errors.length > 0) {
  console.error(`${errors.length} error(s)`);
  process.exit(1);
}
