using BenchmarkDotNet.Running;

// Runs the BenchmarkDotNet suites of this assembly. Examples:
//   dotnet run -c Release --project perf/Gateway.Benchmarks -- --filter '*Blake2s*'
//   dotnet run -c Release --project perf/Gateway.Benchmarks -- --list flat
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
