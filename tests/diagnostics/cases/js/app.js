const unused = 1;

function main() {
  console.log(missing);
  if (x == 1) {
    return;
  }
}
