// Files imported `with { type: "file" }`: the import is the file's path (inside a compiled binary too).
declare module "*/standalone.js" {
  const path: string;
  export default path;
}

// Files imported `with { type: "text" }`: the import is the file's content.
declare module "*/ui/page.js" {
  const text: string;
  export default text;
}
declare module "*/ui/page.css" {
  const text: string;
  export default text;
}
