using BenchmarkDotNet.Running;

// Runs the BenchmarkDotNet suites of this assembly. Examples:
//   dotnet run -c Release --project perf/Gateway.Benchmarks -- --filter '*Blake2s*'
//   dotnet run -c Release --project perf/Gateway.Benchmarks -- --list flat
//   dotnet run -c Release --project perf/Gateway.Benchmarks -- --paired-transport [ROUNDS]
//   dotnet run -c Release --project perf/Gateway.Benchmarks -- --paired-aead [ROUNDS]
//   dotnet run -c Release --project perf/Gateway.Benchmarks -- --overlay-stages [ROUNDS]
//   dotnet run -c Release --project perf/Gateway.Benchmarks -- --conntrack-contention [BURSTS]
//   dotnet run -c Release --project perf/Gateway.Benchmarks -- --round-trip [ROUNDS]
if (args.Length > 0 && args[0] == "--paired-transport")
{
    return Gateway.Benchmarks.PairedTransport.Run(args);
}
if (args.Length > 0 && args[0] == "--overlay-stages")
{
    return Gateway.Benchmarks.OverlayStageTimes.Run(args);
}
if (args.Length > 0 && args[0] == "--conntrack-contention")
{
    return Gateway.Benchmarks.ConntrackContention.Run(args);
}
if (args.Length > 0 && args[0] == "--round-trip")
{
    return Gateway.Benchmarks.RoundTripTimes.Run(args);
}
if (args.Length > 0 && args[0] == "--paired-aead")
{
    return Gateway.Benchmarks.PairedAead.Run(args);
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
