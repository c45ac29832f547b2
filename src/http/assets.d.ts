// Files imported `with { type: "file" }`: the import is the file's path (inside a compiled binary too).
declare module "*/standalone.js" {
  const path: string;
  export default path;
}
