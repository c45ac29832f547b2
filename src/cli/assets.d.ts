// A shared library imported `with { type: "file" }`: the import is its path (inside a compiled binary too).
declare module "*.so" {
  const path: string;
  export default path;
}
