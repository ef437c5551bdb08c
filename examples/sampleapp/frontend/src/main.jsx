import { useEffect, useState } from "react";
import { createRoot } from "react-dom/client";

function App() {
  const [health, setHealth] = useState("checking...");
  useEffect(() => {
    fetch("/api/health/")
      .then((r) => r.json())
      .then((data) => setHealth(`${data.status} (${data.database}, ${data.notes} notes)`))
      .catch((err) => setHealth(`unreachable: ${err}`));
  }, []);
  return (
    <main>
      <h1>aideploy sample app</h1>
      <p>API health: {health}</p>
    </main>
  );
}

createRoot(document.getElementById("root")).render(<App />);
