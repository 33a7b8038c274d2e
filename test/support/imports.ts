// Reading the import graph of a source folder, for the tests that keep its layers apart.
import { readFileSync, readdirSync } from 'node:fs';

/** Relative imports (static, re-exports and dynamic) of each TypeScript file in `dir`, by file name. */
export function importGraph(dir: URL): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const source = readFileSync(new URL(file, dir), 'utf8');
    const targets = [...source.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)'\.\/([^']+)\.js'/g)].map((m) => `${m[1]}.ts`);
    graph.set(file, [...new Set(targets)]);
  }
  return graph;
}

/** One import circle of `graph` as a path that ends where it starts, or null. */
export function findCycle(graph: Map<string, string[]>): string[] | null {
  const done = new Set<string>();
  const visit = (node: string, path: string[]): string[] | null => {
    if (path.includes(node)) return [...path.slice(path.indexOf(node)), node];
    if (done.has(node)) return null;
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next, [...path, node]);
      if (cycle) return cycle;
    }
    done.add(node);
    return null;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node, []);
    if (cycle) return cycle;
  }
  return null;
}
