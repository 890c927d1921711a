function greet(name: string): string {
  return name.length;
}

const count: number = "three";
greet(42);
