fn main() {
    let unused = 5;
    let total: i32 = "five";
    println!("{}", total);
}
